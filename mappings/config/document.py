"""Parse and validate a configuration file (docs/configuration.md) into plain, checked field values (no database).

Every problem is collected with its path in the file (``mappings[3].ref``, indexes from 0) rather
than stopping at the first. Field rules are the models' own validators (``full_clean`` on unsaved
instances); this module adds only what a file can get wrong on its own: YAML types, unknown and
missing keys, duplicates and references between the file's objects. A document is
self-contained: every mapping's issuer and role, and every role's account, must be in the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import yaml
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from mappings import guardrails
from mappings.models import Account, IdentityPin, Issuer, Mapping, Role, validate_pin_id

SECTIONS = ("issuers", "accounts", "roles", "mappings")
# Besides the registry's sections, a file may hold the identity pins (export writes them; apply
# creates the missing ones and never moves one: docs/configuration.md#identity-pins).
PINS = "pins"

REQUIRED = object()

# An account's ``guardrails:`` (mappings.guardrails; docs/configuration.md, "Guardrails"): key ->
# (type, default), each also a field of the Account model.
GUARDRAIL_FIELDS: dict[str, tuple[str, Any]] = {
    "require_protected": ("bool", False),
    "forbid_pipeline_sources": ("list?", []),
    "max_project_breadth": ("str", guardrails.ANY),
    "require_environment": ("bool", False),
    "max_session_seconds": ("int?", None),
    "require_ci_config_ref_uri": ("str?", None),
}
assert tuple(GUARDRAIL_FIELDS) == guardrails.NAMES

# Per section: key -> (type, default). Types: "str", "str?", "bool", "int", "int?", "list", "list?",
# "list1?" (a list of strings, or one string read as a list of one), "id?" (a GitLab id: a YAML
# integer or a string, kept as the string of digits GitLab's tokens carry),
# "datetime?", and "guardrails" (a mapping of GUARDRAIL_FIELDS; absent keys take their defaults).
FIELDS: dict[str, dict[str, tuple[str, Any]]] = {
    "issuers": {
        "name": ("str", REQUIRED),
        "url": ("str", REQUIRED),
        "audiences": ("list", REQUIRED),
        "jwks_url": ("str?", None),
    },
    "accounts": {
        "name": ("str", REQUIRED),
        "account_id": ("str", REQUIRED),
        "mode": ("str", Account.Mode.BROKERED.value),
        "audience": ("str", "sts.amazonaws.com"),
        "manager_role_arn": ("str?", None),
        "trust_policy_limit": ("int", 2048),
        "revoke_sessions_on_removal": ("bool", False),
        "guardrails": ("guardrails", {}),
        "source_identity": ("bool", False),
    },
    "roles": {
        "account": ("str", REQUIRED),
        "name": ("str", REQUIRED),
        "max_session_seconds": ("int", 3600),
        "session_tags": ("bool", True),
    },
    "mappings": {
        "name": ("str", REQUIRED),
        "issuer": ("str", REQUIRED),
        "role": ("str", REQUIRED),
        "project": ("str", None),  # required unless project_id or namespace_id is given (then "*")
        "project_id": ("id?", None),
        "namespace_id": ("id?", None),
        "ref": ("str", "*"),
        "ref_type": ("str", Mapping.RefType.ANY.value),
        "protected": ("bool", False),
        "environment": ("str?", None),
        "pipeline_sources": ("list?", []),
        "ci_config_ref_uri": ("str?", None),
        "environment_protected": ("bool", False),
        "deployment_tiers": ("list1?", []),
        "runner_environment": ("str?", None),
        "pin_identity": ("bool?", None),
        "expires_at": ("datetime?", None),
        "enabled": ("bool", True),
    },
}

# A pin of the file's ``pins:`` (not a registry section: pins are recorded by the exchange).
PIN_FIELDS: dict[str, tuple[str, Any]] = {
    "issuer": ("str", REQUIRED),
    "kind": ("str", REQUIRED),
    "path": ("str", REQUIRED),
    "id": ("str", REQUIRED),
    "pinned_at": ("datetime?", None),  # kept when the pin is created; otherwise informational
    "pinned_by": ("str?", None),
}

# Keys that name another object of the file rather than a model field.
_REFERENCE_KEYS = {"roles": {"account"}, "mappings": {"issuer", "role"}}
_MODELS: dict[str, type[Issuer | Account | Role | Mapping]] = {
    "issuers": Issuer,
    "accounts": Account,
    "roles": Role,
    "mappings": Mapping,
}


class ConfigError(Exception):
    """A configuration file that cannot be applied; ``errors`` are ``(path, message)`` pairs."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("\n".join(f"{path}: {message}" for path, message in errors))


@dataclass
class Item:
    """One object of the file: its path (``roles[2]``), key and checked field values."""

    path: str
    key: str  # issuer/account/mapping name, or "<account>/<role name>"
    values: dict[str, Any]


@dataclass
class Document:
    issuers: dict[str, Item] = field(default_factory=dict)
    accounts: dict[str, Item] = field(default_factory=dict)
    roles: dict[str, Item] = field(default_factory=dict)
    mappings: dict[str, Item] = field(default_factory=dict)
    pins: dict[tuple[str, str, str], Item] = field(default_factory=dict)  # (issuer, kind, path)

    def section(self, name: str) -> dict[str, Item]:
        items: dict[str, Item] = getattr(self, name)
        return items


class _Loader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in the same mapping", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _type_error(kind: str, value: Any) -> str | None:
    """Why ``value`` is not of ``kind``, or None."""
    optional = kind.endswith("?")
    base = kind.rstrip("?")
    if value is None:
        return None if optional else "must not be empty"
    if base == "str":
        if isinstance(value, str):
            return "must not be an empty string; write null or leave the key out" if optional and not value else None
        if isinstance(value, bool):
            return "must be a string; YAML reads yes/no/on/off/true/false as booleans, so quote it"
        if isinstance(value, int | float | date):
            return f'must be a string; quote it ("{value}")'
        return "must be a string"
    if base == "bool":
        return None if isinstance(value, bool) else "must be true or false"
    if base == "int":
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be an integer"
    if base == "id":
        if isinstance(value, str) and not value:
            return "must not be an empty string; write null or leave the key out"
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return None
        return 'must be a GitLab id: a whole number such as 20, or a string of digits such as "20"'

    if base == "list1":  # a list of strings, or one string for a list of one
        if isinstance(value, str) or (isinstance(value, list) and all(isinstance(item, str) for item in value)):
            return None
        return "must be a string or a list of strings"
    if base == "list":
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return None
        return "must be a list of strings"
    if base == "guardrails":
        return None if isinstance(value, dict) else f"must be a mapping of guardrails ({', '.join(GUARDRAIL_FIELDS)})"
    if base == "datetime":
        return None if isinstance(value, datetime | str) else "must be a timestamp such as 2027-01-01T00:00:00Z"
    raise AssertionError(kind)


def _parse_datetime(value: datetime | str) -> tuple[datetime | None, str | None]:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None, f"{value!r} is not an ISO 8601 timestamp such as 2027-01-01T00:00:00Z"
    if value.tzinfo is None or value.utcoffset() is None:
        return None, "give a timezone (for example 2027-01-01T00:00:00Z) so the expiry is unambiguous"
    return value, None


def _messages(error: ValidationError) -> dict[str, list[str]]:
    if hasattr(error, "error_dict"):
        return error.message_dict
    return {NON_FIELD_ERRORS: error.messages}


def _typed_values(
    spec: dict[str, tuple[str, Any]], raw: dict[str, Any], path: str, errors: list[tuple[str, str]]
) -> dict[str, Any]:
    """The well-typed values of ``raw`` by ``spec``, defaults filled in; problems go to ``errors``."""
    for key in raw:
        if key not in spec:
            errors.append((f"{path}.{key}", f"unknown key; known keys are {', '.join(spec)}"))
    values: dict[str, Any] = {}
    for key, (kind, default) in spec.items():
        if key not in raw:
            if default is REQUIRED:
                errors.append((f"{path}.{key}", "is required"))
            else:
                values[key] = type(default)(default) if isinstance(default, list | dict) else default
            continue
        value = raw[key]
        problem = _type_error(kind, value)
        if problem:
            errors.append((f"{path}.{key}", problem))
            continue
        if kind == "datetime?" and value is not None:
            value, problem = _parse_datetime(value)
            if problem:
                errors.append((f"{path}.{key}", problem))
                continue
        if kind in ("list?", "list1?") and value is None:
            value = []
        if kind == "list1?" and isinstance(value, str):
            value = [value]
        if kind == "id?" and isinstance(value, int):
            value = str(value)  # the model's validator refuses what is not a GitLab id
        if kind == "guardrails":
            value = _typed_values(GUARDRAIL_FIELDS, value, f"{path}.{key}", errors)
        values[key] = value
    return values


def model_values(section: str, values: dict[str, Any]) -> dict[str, Any]:
    """A section's checked values as model fields: references left out, guardrails flattened."""
    references = _REFERENCE_KEYS.get(section, set())
    fields = {k: v for k, v in values.items() if k not in references and k != "guardrails"}
    fields.update(values.get("guardrails", {}))
    return fields


def _check_item(section: str, index: int, raw: Any, errors: list[tuple[str, str]]) -> tuple[dict[str, Any], bool]:
    """The object's well-typed field values, and whether it is entirely valid (problems are
    appended to ``errors``; every field is checked even when another one is wrong)."""
    path = f"{section}[{index}]"
    if not isinstance(raw, dict):
        errors.append((path, "must be a mapping of keys to values"))
        return {}, False
    spec = FIELDS[section]
    count = len(errors)
    values = _typed_values(spec, raw, path, errors)
    if section == "mappings" and "project" not in raw:
        _default_project(values, path, errors)
    model_fields = model_values(section, values)
    instance = _MODELS[section](**model_fields)
    unchecked = [f.name for f in instance._meta.fields if f.name not in model_fields]
    try:
        instance.full_clean(exclude=unchecked, validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        for name, messages in _messages(exc).items():
            if name == NON_FIELD_ERRORS and len(errors) != count:
                continue  # whole-object checks of an object with a missing field say nothing new
            if name in GUARDRAIL_FIELDS and section == "accounts":
                where = f"{path}.guardrails.{name}"
                values.get("guardrails", {}).pop(name, None)
            else:
                where = path if name == NON_FIELD_ERRORS else f"{path}.{name}"
                values.pop(name, None)
            errors.extend((where, message) for message in messages)
    return values, len(errors) == count


def _default_project(values: dict[str, Any], path: str, errors: list[tuple[str, str]]) -> None:
    """A mapping without ``project``: bound by id alone, it matches any project path (``*``) and
    its ids choose the project; without an id the key is required."""
    if values.get("project_id") is not None or values.get("namespace_id") is not None:
        values["project"] = "*"
        return
    values.pop("project", None)
    if "project_id" in values and "namespace_id" in values:  # both well typed (and absent)
        errors.append((f"{path}.project", "is required (or give project_id or namespace_id)"))


def _load(text: str, errors: list[tuple[str, str]]) -> dict[str, Any] | None:
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(document)"
        problem = getattr(exc, "problem", None) or str(exc)
        errors.append((where, f"not valid YAML: {problem}"))
        return None
    if data is None:
        return {}
    if not isinstance(data, dict):
        errors.append(("(document)", f"must be a mapping with the keys {', '.join((*SECTIONS, PINS))}"))
        return None
    for key in data:
        if key not in (*SECTIONS, PINS):
            errors.append((str(key), f"unknown key; a configuration has {', '.join((*SECTIONS, PINS))}"))
    return data


def parse_document(text: str) -> Document:
    """The checked contents of a configuration file; raises :class:`ConfigError` listing every
    problem with its path. Touches no database."""
    errors: list[tuple[str, str]] = []
    data = _load(text, errors)
    if data is None:
        raise ConfigError(errors)
    document = Document()
    every: dict[str, list[Item]] = {section: [] for section in SECTIONS}
    for section in SECTIONS:
        raw_items = data.get(section)
        if raw_items is None:
            continue
        if not isinstance(raw_items, list):
            errors.append((section, "must be a list"))
            continue
        items = document.section(section)
        seen_keys: dict[str, str] = {}
        unique_values: dict[str, dict[Any, str]] = {"url": {}, "account_id": {}}
        for index, raw in enumerate(raw_items):
            path = f"{section}[{index}]"
            values, valid = _check_item(section, index, raw, errors)
            key = _key(section, values)
            if key is not None:
                if key in seen_keys:
                    errors.append((f"{path}.name", f"{key!r} is already defined at {seen_keys[key]}"))
                    valid = False
                else:
                    seen_keys[key] = path
            for unique in ("url", "account_id"):
                value = values.get(unique)
                if value is not None:
                    seen = unique_values[unique]
                    if value in seen:
                        errors.append((f"{path}.{unique}", f"{value!r} is already used by {seen[value]}"))
                        valid = False
                    seen.setdefault(value, path)
            item = Item(path=path, key=key or "", values=values)
            every[section].append(item)
            if valid and key is not None:
                items[key] = item
    _check_references(every, errors)
    _check_guardrails(document, errors)
    if data.get(PINS) is not None:
        issuers = {item.key for item in every["issuers"] if item.key}
        document.pins = _parse_pins(data[PINS], issuers, errors)
    if errors:
        raise ConfigError(errors)
    return document


def _key(section: str, values: dict[str, Any]) -> str | None:
    if "name" not in values:
        return None
    if section == "roles":
        return f"{values['account']}/{values['name']}" if "account" in values else None
    return str(values["name"])


def _check_references(every: dict[str, list[Item]], errors: list[tuple[str, str]]) -> None:
    """References resolve to an object of the file (valid or not: a broken target is reported
    once, at its own path)."""
    names = {section: {item.key for item in items if item.key} for section, items in every.items()}
    for item in every["roles"]:
        account = item.values.get("account")
        if account is not None and account not in names["accounts"]:
            errors.append((f"{item.path}.account", f"no account named {account!r} in this file"))
    for item in every["mappings"]:
        issuer = item.values.get("issuer")
        if issuer is not None and issuer not in names["issuers"]:
            errors.append((f"{item.path}.issuer", f"no issuer named {issuer!r} in this file"))
        role = item.values.get("role")
        if role is None:
            continue
        if "/" not in role:
            errors.append((f"{item.path}.role", f"{role!r} must be <account>/<role name>, e.g. prod/deploy-web"))
        elif role not in names["roles"]:
            errors.append((f"{item.path}.role", f"no role {role!r} in this file"))


def _check_guardrails(document: Document, errors: list[tuple[str, str]]) -> None:
    """Every role and mapping of the file keeps its account's guardrails (the account is in the
    file: a document is self-contained). The registry services check the same on every write."""
    for item in document.roles.values():
        account = document.accounts.get(item.values["account"])
        if account is None:
            continue
        rails = guardrails.Guardrails.of(account.values["guardrails"])
        for violation in guardrails.role_violations(
            rails, max_session_seconds=item.values["max_session_seconds"], account=f"account {account.key}"
        ):
            errors.append((f"{item.path}.{violation.field}", violation.message))
    for item in document.mappings.values():
        role = document.roles.get(item.values["role"])
        account = document.accounts.get(role.values["account"]) if role is not None else None
        if account is None:
            continue
        rails = guardrails.Guardrails.of(account.values["guardrails"])
        for violation in guardrails.mapping_violations(
            rails,
            project=item.values["project"],
            protected=item.values["protected"],
            environment=item.values["environment"],
            pipeline_sources=item.values["pipeline_sources"],
            ci_config_ref_uri=item.values["ci_config_ref_uri"],
            project_id=item.values["project_id"],
            namespace_id=item.values["namespace_id"],
            direct=account.values["mode"] == Account.Mode.DIRECT,
            account=f"account {account.key}",
        ):
            errors.append((f"{item.path}.{violation.field}", violation.message))


def _parse_pins(raw: Any, issuers: set[str], errors: list[tuple[str, str]]) -> dict[tuple[str, str, str], Item]:
    """The file's identity pins by (issuer, kind, path); problems go to ``errors``."""
    if not isinstance(raw, list):
        errors.append((PINS, "must be a list"))
        return {}
    pins: dict[tuple[str, str, str], Item] = {}
    seen: dict[tuple[str, str, str], str] = {}
    for index, item in enumerate(raw):
        path = f"{PINS}[{index}]"
        if not isinstance(item, dict):
            errors.append((path, "must be a mapping of keys to values"))
            continue
        count = len(errors)
        values = _typed_values(PIN_FIELDS, item, path, errors)
        if values.get("kind") is not None and values["kind"] not in IdentityPin.Kind.values:
            errors.append((f"{path}.kind", f"must be one of {', '.join(IdentityPin.Kind.values)}"))
        if values.get("id") is not None:
            try:
                validate_pin_id(values["id"])
            except ValidationError as exc:
                errors.extend((f"{path}.id", message) for message in exc.messages)
        if values.get("path") is not None and not 0 < len(values["path"]) <= 255:
            errors.append((f"{path}.path", "must be 1 to 255 characters"))
        if values.get("pinned_by") is not None and len(values["pinned_by"]) > 200:
            errors.append((f"{path}.pinned_by", "must be at most 200 characters"))
        issuer = values.get("issuer")
        if issuer is not None and issuer not in issuers:
            errors.append((f"{path}.issuer", f"no issuer named {issuer!r} in this file"))
        if len(errors) != count:
            continue
        key = (values["issuer"], values["kind"], values["path"])
        if key in seen:
            errors.append((path, f"{key[1]} {key[2]!r} of issuer {key[0]!r} is already pinned at {seen[key]}"))
            continue
        seen[key] = path
        pins[key] = Item(path=path, key=" ".join(key), values=values)
    return pins
