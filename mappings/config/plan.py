"""Reconcile the database with a configuration document: a plan, object by object, then its
all-or-nothing application through ``mappings.services`` (the registry's single write path)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction
from django.utils import timezone

from mappings import lint, pins, selectors, services, write_checks
from mappings.config.document import FIELDS, GUARDRAIL_FIELDS, PINS, SECTIONS, ConfigError, Document, Item
from mappings.models import Account, IdentityPin, Issuer, Mapping, RegistryVersion, Role

CREATE, UPDATE, DELETE = "create", "update", "delete"
_SINGULAR = {"issuers": "issuer", "accounts": "account", "roles": "role", "mappings": "mapping", PINS: "pin"}
# Fields whose value must be unique across the table besides the name.
_UNIQUE = {"issuers": "url", "accounts": "account_id"}


@dataclass
class Change:
    action: str
    section: str
    key: str
    path: str | None = None  # where the object is in the file (create/update)
    fields: list[tuple[str, Any, Any]] = field(default_factory=list)  # (name, old, new) for updates
    obj: Any = None  # the database object (update/delete)

    def describe(self) -> str:
        symbol = {CREATE: "+", UPDATE: "~", DELETE: "-"}[self.action]
        line = f"{symbol} {self.action} {_SINGULAR[self.section]} {self.key}"
        if self.fields:
            line += ": " + ", ".join(f"{name} {show(old)} -> {show(new)}" for name, old, new in self.fields)
        return line

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "kind": _SINGULAR[self.section],
            "name": self.key,
            "path": self.path,
            "fields": [{"name": name, "old": _json(old), "new": _json(new)} for name, old, new in self.fields],
        }


@dataclass(frozen=True)
class PlanWarning:
    """A lint warning about a mapping of the file, with its path there."""

    path: str
    warning: lint.Warning

    def describe(self) -> str:
        return f"! warning {self.path} ({self.warning.code}): {self.warning.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, **self.warning.as_dict()}


@dataclass
class Plan:
    changes: list[Change]
    unchanged: int
    kept: int  # objects in the database but not in the file, kept without --prune
    policy_sizes: list[write_checks.PolicySize] = field(default_factory=list)  # each touched role's
    warnings: list[PlanWarning] = field(default_factory=list)  # lint of the file's mappings, as applied

    @property
    def empty(self) -> bool:
        return not self.changes

    def count(self, action: str) -> int:
        return sum(1 for change in self.changes if change.action == action)

    def lines(self) -> list[str]:
        lines = [change.describe() for change in self.changes]
        lines += [size.describe() for size in self.policy_sizes]
        summary = (
            f"Plan: {self.count(CREATE)} to create, {self.count(UPDATE)} to update, "
            f"{self.count(DELETE)} to delete, {self.unchanged} unchanged."
        )
        if self.kept:
            summary += f" {self.kept} not in the file kept (--prune deletes them)."
        if self.warnings:
            summary += f" {len(self.warnings)} warning{'s' if len(self.warnings) != 1 else ''}."
        if self.empty:
            summary = "No changes. " + summary
        return [*lines, summary, *(warning.describe() for warning in self.warnings)]

    def as_dict(self) -> dict[str, Any]:
        """The plan for tools (``apply --format json``; docs/commands.md)."""
        return {
            "changes": [change.as_dict() for change in self.changes],
            "summary": {
                "create": self.count(CREATE),
                "update": self.count(UPDATE),
                "delete": self.count(DELETE),
                "unchanged": self.unchanged,
                "kept": self.kept,
            },
            "policy_sizes": [size.as_dict() for size in self.policy_sizes],
            "warnings": [warning.as_dict() for warning in self.warnings],
        }


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_datetime(value)
    return value


def show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return repr(value)


def format_datetime(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def current_values(section: str, obj: Any) -> dict[str, Any]:
    """A database object's fields in the file's shape (references as names)."""
    values = {}
    for name in FIELDS[section]:
        if section == "roles" and name == "account":
            values[name] = obj.account.name
        elif section == "mappings" and name == "issuer":
            values[name] = obj.issuer.name
        elif section == "mappings" and name == "role":
            values[name] = f"{obj.role.account.name}/{obj.role.name}"
        elif name == "guardrails":
            values[name] = {key: getattr(obj, key) for key in GUARDRAIL_FIELDS}
        else:
            values[name] = getattr(obj, name)
    return values


def object_key(section: str, obj: Any) -> str:
    return f"{obj.account.name}/{obj.name}" if section == "roles" else obj.name


def load_state(*, pins: bool = True) -> dict[str, dict[Any, Any]]:
    """Every registry object, by section and key, in four queries; with ``pins``, the identity
    pins too, by (issuer, kind, path), in a fifth."""
    querysets = {
        "issuers": Issuer.objects.all(),
        "accounts": Account.objects.all(),
        "roles": Role.objects.select_related("account"),
        "mappings": Mapping.objects.select_related("issuer", "role__account"),
    }
    state: dict[str, dict[Any, Any]] = {}
    for section, queryset in querysets.items():
        state[section] = {object_key(section, obj): obj for obj in queryset}
    if pins:
        state[PINS] = {(p.issuer.name, p.kind, p.path): p for p in IdentityPin.objects.select_related("issuer")}
    # One object per row: an account updated by the plan is the one its roles' mappings are
    # validated against (guardrails), not a stale copy.
    accounts = {obj.pk: obj for obj in state["accounts"].values()}
    roles = {obj.pk: obj for obj in state["roles"].values()}
    for role in roles.values():
        role.account = accounts[role.account_id]
    for mapping in state["mappings"].values():
        mapping.role = roles[mapping.role_id]
    return state


def compute_plan(document: Document, *, prune: bool, state: dict[str, dict[Any, Any]] | None = None) -> Plan:
    """What applying ``document`` would change; raises :class:`ConfigError` for conflicts with
    objects that the file does not list (and that stay without ``--prune``)."""
    state = load_state() if state is None else state
    errors: list[tuple[str, str]] = []
    changes: list[Change] = []
    unchanged = kept = 0
    for section in SECTIONS:
        wanted = document.section(section)
        existing = state[section]
        for key, item in wanted.items():
            obj = existing.get(key)
            if obj is None:
                changes.append(Change(CREATE, section, key, path=item.path))
                continue
            current = current_values(section, obj)
            differ = []
            for name, value in item.values.items():
                if isinstance(value, dict):  # guardrails: one entry per guardrail that changes
                    differ += [(f"{name}.{k}", current[name][k], v) for k, v in value.items() if current[name][k] != v]
                elif current[name] != value:
                    differ.append((name, current[name], value))
            if differ:
                changes.append(Change(UPDATE, section, key, path=item.path, fields=differ, obj=obj))
            else:
                unchanged += 1
        stale = [key for key in existing if key not in wanted]
        if prune:
            changes.extend(Change(DELETE, section, key, obj=existing[key]) for key in stale)
        else:
            kept += len(stale)
        unique = _UNIQUE.get(section)
        if unique and not prune:
            owners = {getattr(existing[key], unique): key for key in stale}
            for item in wanted.values():
                owner = owners.get(item.values[unique])
                if owner is not None:
                    errors.append(
                        (
                            f"{item.path}.{unique}",
                            f"{item.values[unique]!r} belongs to {_SINGULAR[section]} {owner!r} in the database, "
                            "which this file does not list; rename it in the file or use --prune",
                        )
                    )
    pin_changes, pins_unchanged = _pins_plan(document, state.get(PINS, {}), errors)
    if errors:
        raise ConfigError(errors)
    order = {DELETE: 0, CREATE: 1, UPDATE: 1}
    deletes_first = sorted(
        changes,
        key=lambda c: (
            order[c.action],
            -SECTIONS.index(c.section) if c.action == DELETE else SECTIONS.index(c.section),
        ),
    )
    return Plan(changes=deletes_first + pin_changes, unchanged=unchanged + pins_unchanged, kept=kept)


def _pins_plan(
    document: Document, existing: dict[tuple[str, str, str], IdentityPin], errors: list[tuple[str, str]]
) -> tuple[list[Change], int]:
    """The file's pins: missing ones are created; one pinned to another id in the database is an
    error (a pin moves only by an accepted identity change); pins the file does not list stay,
    with or without ``--prune`` (they are recorded by the exchange, not configured)."""
    changes, unchanged = [], 0
    for key, item in document.pins.items():
        pin = existing.get(key)
        if pin is None:
            changes.append(Change(CREATE, PINS, item.key, path=item.path, fields=[("id", None, item.values["id"])]))
        elif pin.gitlab_id != item.values["id"]:
            issuer, kind, path = key
            errors.append(
                (
                    f"{item.path}.id",
                    f"{kind} {path!r} of issuer {issuer!r} is pinned to {pin.gitlab_id} in the database, not "
                    f"{item.values['id']}; apply never moves a pin: accept the change with manage.py "
                    "accept_identity_change (or the admin's identity pins), then export again",
                )
            )
        else:
            unchanged += 1
    return changes, unchanged


def _validation_errors(path: str, exc: ValidationError) -> list[tuple[str, str]]:
    if not hasattr(exc, "error_dict"):
        return [(path, message) for message in exc.messages]
    return [
        (path if name == NON_FIELD_ERRORS else f"{path}.{name}", message)
        for name, messages in exc.message_dict.items()
        for message in messages
    ]


class _DryRun(Exception):
    def __init__(self, plan: Plan):
        self.plan = plan


def apply_document(document: Document, *, prune: bool, actor: str, dry_run: bool = False, strict: bool = False) -> Plan:
    """Make the database match ``document`` in one transaction, through the registry services.

    Deletes (with ``prune``) come first, children before parents; then creates and updates,
    parents before children. The registry this leaves is checked as one batch (guardrails,
    trust-policy quotas: ``mappings.write_checks``), then the file's mappings are linted; the plan
    carries each touched role's policy size and the warnings. Any failure — or any warning with
    ``strict`` — rolls everything back and raises :class:`ConfigError` with paths in the file.
    With ``dry_run`` every step runs and is then rolled back, so a dry run refuses exactly what
    an apply would.
    """
    try:
        return _apply(
            document, prune=prune, actor=actor + (" (dry run)" if dry_run else ""), dry_run=dry_run, strict=strict
        )
    except _DryRun as done:
        return done.plan


@transaction.atomic
def _apply(document: Document, *, prune: bool, actor: str, dry_run: bool, strict: bool) -> Plan:
    # Every registry write moves this one row: holding it serialises concurrent applies (and
    # makes admin saves wait) while the plan is computed and applied.
    RegistryVersion.objects.get_or_create(pk=1)
    RegistryVersion.objects.select_for_update().get(pk=1)
    state = load_state(pins=bool(document.pins))
    plan = compute_plan(document, prune=prune, state=state)
    objects = {section: dict(state[section]) for section in SECTIONS}
    try:
        with services.registry_batch() as batch:
            for change in plan.changes:
                if change.section == PINS:
                    continue  # created below, once their issuers exist
                if change.action == DELETE:
                    services.registry_delete(change.obj, actor=actor)
                    continue
                item = document.section(change.section)[change.key]
                obj = change.obj if change.action == UPDATE else _MODEL[change.section]()
                _assign(change.section, obj, item, objects)
                try:
                    services.registry_save(obj, actor=actor)
                except ValidationError as exc:
                    raise ConfigError(_validation_errors(item.path, exc)) from None
                objects[change.section][change.key] = obj
            pins.pins_create(
                [
                    _new_pin(document.pins[key], objects["issuers"][key[0]])
                    for key in document.pins
                    if key not in state.get(PINS, {})
                ],
                actor=actor,
            )
    except write_checks.RegistryRefused as exc:
        raise ConfigError([_refusal_error(document, refusal) for refusal in exc.refusals]) from None
    plan.policy_sizes = batch.policy_sizes
    plan.warnings = _warnings(document)
    if strict and plan.warnings:
        raise ConfigError(
            [(w.path, f"{w.warning.message} (warning {w.warning.code}, an error with --strict)") for w in plan.warnings]
        )
    if dry_run:
        raise _DryRun(plan)
    return plan


def _refusal_error(document: Document, refusal: write_checks.Refusal) -> tuple[str, str]:
    """A refusal at its path in the file; an object the file does not list is named at the
    account setting it conflicts with."""
    item = document.section(refusal.section).get(refusal.key)
    if item is not None:
        return (f"{item.path}.{refusal.field}" if refusal.field else item.path, refusal.message)
    account = document.accounts.get(refusal.account)
    where = (
        f"guardrails.{refusal.account_field}" if refusal.account_field in GUARDRAIL_FIELDS else refusal.account_field
    )
    message = f"{refusal.label} (not in this file): {refusal.message}"
    if refusal.label in refusal.message:
        message = f"{refusal.message} ({refusal.label} is not in this file)"
    return (f"{account.path}.{where}" if account is not None else refusal.label, message)


def _warnings(document: Document) -> list[PlanWarning]:
    """Lint warnings about the file's mappings, in the registry as it now stands."""
    if not document.mappings:
        return []
    rules = selectors.registry_rules()
    roles = {rule.role_arn for rule in rules if rule.name in document.mappings}
    warnings = lint.lint([rule for rule in rules if rule.role_arn in roles], timezone.now())
    return [PlanWarning(document.mappings[w.mapping].path, w) for w in warnings if w.mapping in document.mappings]


def _new_pin(item: Item, issuer: Issuer) -> pins.NewPin:
    values = item.values
    return pins.NewPin(
        issuer=issuer,
        kind=values["kind"],
        path=values["path"],
        gitlab_id=values["id"],
        pinned_at=values["pinned_at"],
        pinned_by=values["pinned_by"] or "",
    )


_MODEL: dict[str, type[Issuer | Account | Role | Mapping]] = {
    "issuers": Issuer,
    "accounts": Account,
    "roles": Role,
    "mappings": Mapping,
}


def _assign(section: str, obj: Any, item: Item, objects: dict[str, dict[str, Any]]) -> None:
    for name, value in item.values.items():
        if name == "guardrails":
            for key, rail in value.items():
                setattr(obj, key, rail)
            continue
        if section == "roles" and name == "account":
            obj.account = objects["accounts"][value]
        elif section == "mappings" and name == "issuer":
            obj.issuer = objects["issuers"][value]
        elif section == "mappings" and name == "role":
            obj.role = objects["roles"][value]
        else:
            setattr(obj, name, value)
