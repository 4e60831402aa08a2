"""Reads of the registry."""

from __future__ import annotations

import functools
import gc
import logging
import threading
import uuid
from collections import abc
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Q, QuerySet

from mappings.matching import Pin, Pins, RegisteredIssuer, Registry, Rule, RuleAccount, RuleRole, Shards
from mappings.models import IdentityPin, Issuer, Mapping, RegistryChange, RegistryVersion, Role, role_arn

logger = logging.getLogger(__name__)
_lock = threading.Lock()


def registry_version() -> int:
    """The registry's version (0 before the first write through the services)."""
    return _registry_stamp().version


class RegistryAt(NamedTuple):
    """Which registry a snapshot was read at: the version row's version and stamp; ``(0, None)``
    while there is no row (no write through the services yet)."""

    version: int
    stamp: uuid.UUID | None


class RegistryMoved(Exception):
    """The registry is no longer at the version a decision was made on; nothing was written."""


def _registry_columns() -> dict[str, str]:
    return {field.name: str(field.column) for field in RegistryVersion._meta.concrete_fields}


@functools.cache
def _stamp_statement() -> str:
    quote = connection.ops.quote_name
    column = _registry_columns()
    columns = ", ".join(quote(column[name]) for name in ("version", "stamp"))
    # Names from the model's metadata; no value is interpolated.
    return f"SELECT {columns} FROM {quote(RegistryVersion._meta.db_table)} WHERE {quote(column['id'])} = 1"  # noqa: S608


def _registry_stamp() -> RegistryAt:
    """The registry's (version, stamp): one plain statement, its text built once, rather than a
    queryset (an ORM read of this row cost several times the statement itself in ``make bench``).
    The stamp is a ``UUID`` on every database, as the ORM reads it."""
    with connection.cursor() as cursor:
        cursor.execute(_stamp_statement())
        row = cursor.fetchone()
    if row is None:
        return RegistryAt(0, None)
    version, stamp = row
    return RegistryAt(version, stamp if isinstance(stamp, uuid.UUID) else uuid.UUID(str(stamp)))


def registry_still_at(at: RegistryAt | None) -> None:
    """Raise :class:`RegistryMoved` when the registry has moved since ``at`` (one primary-key
    read); ``None``: a snapshot read just before, not checked (no read)."""
    if at is not None and _registry_stamp() != at:
        raise RegistryMoved


@functools.cache
def _guard_statement(*, row: bool) -> str:
    quote = connection.ops.quote_name
    column = _registry_columns()
    table, pk = quote(RegistryVersion._meta.db_table), quote(column["id"])
    if not row:  # a registry never written through the services: still none
        return f"SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE {pk} = 1)"  # noqa: S608
    version, stamp = (RegistryVersion._meta.get_field(name) for name in ("version", "stamp"))
    # Names from the model's metadata; the version and stamp are parameters.
    return (
        f"SELECT 1 FROM {table} WHERE {pk} = 1 "  # noqa: S608
        f"AND {quote(column['version'])} = %s::{version.db_type(connection)} "
        f"AND {quote(column['stamp'])} = %s::{stamp.db_type(connection)}"
    )


def registry_guard(at: RegistryAt) -> tuple[str, list[Any]]:
    """A ``SELECT`` (and its parameters) that gives one row while the registry is still at
    ``at``, and none once it has moved: the guard a writer puts in the statement that commits a
    decision made on the snapshot of ``at`` (``exchange.audit.audit_record_spending``)."""
    if at.stamp is None:
        return _guard_statement(row=False), []
    stamp = RegistryVersion._meta.get_field("stamp").get_db_prep_value(at.stamp, connection)
    return _guard_statement(row=True), [at.version, stamp]


def build_role(*, id: int, name: str, max_session_seconds: int, session_tags: bool, account: RuleAccount) -> RuleRole:
    """The one builder of a rule's :class:`RuleRole`: the role ARN is derived from the account id
    and role name."""
    return RuleRole(
        id=id,
        name=name,
        arn=role_arn(account.account_id, name),
        max_session_seconds=max_session_seconds,
        session_tags=session_tags,
        account=account,
    )


def build_rule(
    *,
    id: int,
    name: str,
    issuer: str,
    role: RuleRole,
    project: str,
    ref: str,
    ref_type: str,
    protected: bool,
    environment: str | None,
    pipeline_sources: Iterable[str] | None,
    expires_at: datetime | None,
    enabled: bool,
    ci_config_ref_uri: str | None = None,
    environment_protected: bool = False,
    deployment_tiers: Iterable[str] | None = None,
    runner_environment: str | None = None,
    pin_identity: bool | None = None,
    project_id: str | None = None,
    namespace_id: str | None = None,
) -> Rule:
    """The one builder of the matcher's :class:`Rule`, for the registry, a role's IAM sync and a
    proposed configuration file alike. ``role`` is shared by every rule of the role
    (:func:`build_role`); a mapping's ``pin_identity`` of ``None`` takes the registry default
    (``ROLEGATE_PIN_IDENTITY``)."""
    return Rule(
        id=id,
        name=name,
        issuer=issuer,
        role=role,
        project=project,
        ref=ref,
        ref_type=ref_type,
        protected=protected,
        environment=environment,
        pipeline_sources=tuple(pipeline_sources or ()),
        expires_at=expires_at,
        enabled=enabled,
        ci_config_ref_uri=ci_config_ref_uri,
        environment_protected=environment_protected,
        deployment_tiers=tuple(deployment_tiers or ()),
        runner_environment=runner_environment or None,
        pin_identity=settings.ROLEGATE_PIN_IDENTITY if pin_identity is None else pin_identity,
        project_id=project_id or None,
        namespace_id=namespace_id or None,
    )


# A role's columns, as read from a role (``_rule_roles``) or through a mapping (``_rule_rows``).
_ROLE_COLUMNS = (
    "id",
    "name",
    "max_session_seconds",
    "session_tags",
    "account__name",
    "account__account_id",
    "account__mode",
    "account__audience",
    "account__source_identity",
)
_ROLE_WIDTH = len(_ROLE_COLUMNS)


# A mapping's columns as read by :func:`_rule_rows`, each with the keyword of :func:`build_rule` it fills.
_MAPPING_COLUMNS = {
    "id": "id",
    "name": "name",
    "issuer__name": "issuer",
    "project": "project",
    "ref": "ref",
    "ref_type": "ref_type",
    "protected": "protected",
    "environment": "environment",
    "pipeline_sources": "pipeline_sources",
    "expires_at": "expires_at",
    "enabled": "enabled",
    "ci_config_ref_uri": "ci_config_ref_uri",
    "environment_protected": "environment_protected",
    "deployment_tiers": "deployment_tiers",
    "runner_environment": "runner_environment",
    "pin_identity": "pin_identity",
    "project_id": "project_id",
    "namespace_id": "namespace_id",
}
# build_rule's keywords for what a mapping holds itself (all but its role), in _rule_rows' order:
# also the keys of a mapping in a configuration file (mappings.config.rules_from_document).
RULE_FIELDS = tuple(_MAPPING_COLUMNS.values())


def _rule_rows(mappings: QuerySet[Mapping]) -> QuerySet[Mapping, tuple[Any, ...]]:
    """The columns :func:`_rule` reads, in its order: the role's, then the mapping's."""
    return mappings.values_list(*(f"role__{column}" for column in _ROLE_COLUMNS), *_MAPPING_COLUMNS)


def _rule(row: tuple[Any, ...], roles: dict[int, RuleRole]) -> Rule:
    """The rule of a row of :func:`_rule_rows`. Its role is taken from ``roles`` (by id), or read
    from the row and added to them: the rules of one role share one :class:`RuleRole`."""
    role = roles.get(row[0])
    if role is None:
        role = roles[row[0]] = _role(row)
    return build_rule(role=role, **dict(zip(RULE_FIELDS, row[_ROLE_WIDTH:], strict=True)))


def _role(row: tuple[Any, ...]) -> RuleRole:
    """The role of a row that starts with :data:`_ROLE_COLUMNS`."""
    pk, name, max_session, session_tags, account_name, account_id, mode, audience, identity = row[:_ROLE_WIDTH]
    account = RuleAccount(
        name=account_name, account_id=account_id, mode=mode, audience=audience, source_identity=identity
    )
    return build_role(id=pk, name=name, max_session_seconds=max_session, session_tags=session_tags, account=account)


def _rule_roles(roles: QuerySet[Role]) -> dict[int, RuleRole]:
    """``roles`` as rule roles, by id."""
    return {row[0]: _role(row) for row in roles.values_list(*_ROLE_COLUMNS)}


def registry_rules(mappings: QuerySet[Mapping] | None = None) -> list[Rule]:
    """Every mapping (live or not), or only ``mappings``, as matcher :class:`Rule` objects (one query)."""
    roles: dict[int, RuleRole] = {}
    return [_rule(row, roles) for row in _rule_rows(Mapping.objects.all() if mappings is None else mappings)]


def registry_issuers() -> dict[int, RegisteredIssuer]:
    """Every registered issuer, by id, as plain values for verifying tokens."""
    rows = Issuer.objects.values_list("id", "name", "url", "audiences", "jwks_url")
    return {
        pk: RegisteredIssuer(name=name, url=url, audiences=tuple(audiences or ()), jwks_url=jwks_url or None)
        for pk, name, url, audiences, jwks_url in rows
    }


def registry_pins(pins: QuerySet[IdentityPin] | None = None) -> list[tuple[int, Pin]]:
    """Every identity pin, or only ``pins``, with its id."""
    rows = (IdentityPin.objects.all() if pins is None else pins).values_list(
        "id", "issuer__name", "kind", "path", "gitlab_id", "pinned_at", "pinned_by"
    )
    return [
        (pk, Pin(issuer=issuer, kind=kind, path=path, gitlab_id=gitlab_id, pinned_at=at, pinned_by=by))
        for pk, issuer, kind, path, gitlab_id, at, by in rows
    ]


@dataclass(frozen=True)
class _Snapshot:
    """A process's registry and what patching it needs: the version and stamp it was read at,
    every role as its rules hold it (by id), every issuer's name (by id), and for each pin id its
    key."""

    registry: Registry
    at: RegistryAt
    roles: abc.Mapping[int, RuleRole]
    issuer_names: abc.Mapping[int, str]
    pin_keys: Shards[int, tuple[str, str, str]]


_cached: _Snapshot | None = None


def registry() -> Registry:
    """The current registry (rules and issuers), cached per process and refreshed when its version
    moves (every write to an issuer, account, role, mapping or pin moves it).

    Costs one primary-key read per call; a change committed by any process is seen on the next
    call of every process. The refresh reads only what changed since this process's version
    (``RegistryChange``) and patches the snapshot; it rebuilds everything only on a process's
    first call, after a bulk write, or when the log no longer reaches back to its version.
    """
    return registry_current()[0]


def registry_current() -> tuple[Registry, RegistryAt]:
    """:func:`registry`, with the version and stamp it is at."""
    global _cached
    at = _registry_stamp()
    cached = _cached
    if cached is not None and cached.at == at:
        return cached.registry, at
    with _lock:
        cached = _cached
        if cached is None or cached.at != at:
            _cached = cached = _refreshed(cached, at)
        return cached.registry, cached.at


def registry_refreshed(stale: RegistryAt) -> tuple[Registry, RegistryAt]:
    """:func:`registry_current` for a caller that has just found the registry moved away from the
    snapshot it decided on, read at ``stale`` (:func:`registry_still_at`, a failed
    :func:`registry_guard`): it refreshes without reading the version first (the refresh reads
    it, in its own database snapshot). When another thread has refreshed the process's snapshot
    meanwhile, that one is taken as it is: the caller's next commit checks it anyway."""
    global _cached
    with _lock:
        cached = _cached
        if cached is None or cached.at == stale:
            _cached = cached = _refreshed(cached, None)
        return cached.registry, cached.at


def registry_cached() -> tuple[Registry, RegistryAt]:
    """This process's registry snapshot as it is, WITHOUT asking the database whether it is still
    current (no read at all once the process has one), with the version and stamp it was read at.

    For a caller that checks ``at`` where it commits (:func:`registry_guard`, :func:`registry_still_at`)
    and starts again from :func:`registry_refreshed` when the registry moved: the token exchange.
    A process without a snapshot yet builds it (:func:`registry_current`)."""
    cached = _cached
    if cached is not None:
        return cached.registry, cached.at
    return registry_current()


def _refreshed(cached: _Snapshot | None, at: RegistryAt | None) -> _Snapshot:
    """The next snapshot, read in one database snapshot: the version, the change log and the rows
    are consistent with each other even while other processes write. (Inside a caller's
    transaction -- a console page, a test -- that transaction's reads are used as they are, and
    ``at``, the version the caller read, if it read it.)"""
    if connection.in_atomic_block:
        return _read(cached, at or _registry_stamp())
    with transaction.atomic():
        if connection.vendor == "postgresql":  # the first statement: every read below sees one snapshot
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return _read(cached, _registry_stamp())


def _read(cached: _Snapshot | None, at: RegistryAt) -> _Snapshot:
    if cached is not None and cached.at == at:  # another thread refreshed it already
        return cached
    if cached is not None and cached.at.version < at.version:
        since = cached.at.version
        changes = list(
            RegistryChange.objects.filter(version__gte=since).values_list("version", "stamp", "kind", "object_id")
        )
        if _continuous(changes, cached.at, at):
            return _patched(cached, [c for c in changes if c[0] > since], at)
    return _built(at)


def _continuous(changes: list[tuple[Any, ...]], cached: RegistryAt, at: RegistryAt) -> bool:
    """Whether ``changes`` lead from the cached snapshot's ``cached`` to ``at``: the log still
    holds the cached version with its stamp (same history, not pruned) and the current one, and
    nothing after the cached version is a bulk write."""
    since = cached.version
    seen = {RegistryAt(v, s) for v, s, _, _ in changes}
    bulk = any(v > since and kind == RegistryChange.Kind.ALL for v, _, kind, _ in changes)
    return cached in seen and at in seen and not bulk


def _built(at: RegistryAt) -> _Snapshot:
    rows = list(_rule_rows(Mapping.objects.all()))
    roles: dict[int, RuleRole] = {}
    issuers = registry_issuers()
    pins = registry_pins()
    snapshot = _Snapshot(
        registry=Registry(
            [_rule(row, roles) for row in rows],
            version=at.version,
            issuers=issuers.values(),
            pins=(pin for _, pin in pins),
        ),
        at=at,
        roles=roles,
        issuer_names={pk: issuer.name for pk, issuer in issuers.items()},
        pin_keys=Shards((pk, pin.key) for pk, pin in pins),
    )
    # The snapshot's objects (several per mapping) live until the next full build: keep them out
    # of the garbage collector's full passes, which would otherwise walk them all, during
    # whichever request triggers one.
    del rows
    gc.freeze()
    return snapshot


def _patched(cached: _Snapshot, changes: list[tuple[Any, ...]], at: RegistryAt) -> _Snapshot:
    """The next snapshot from the cached one and the changes since: changed mappings are read
    again; a changed role, or each role of a changed account, is read again and given to the
    registry as its new value (or as gone), without reading its mappings, whose rules share it;
    a changed issuer is read again, and only a renamed one's mappings (the index is by issuer
    name); changed pins are read again (all of them when an issuer was renamed: pins are keyed by
    its name)."""
    ids: dict[str, set[int]] = {kind: set() for kind in RegistryChange.Kind.values}
    for _, _, kind, object_id in changes:
        ids[kind].add(object_id)
    mapping_ids, role_ids, account_ids, issuer_ids = (
        ids[RegistryChange.Kind.MAPPING],
        ids[RegistryChange.Kind.ROLE],
        ids[RegistryChange.Kind.ACCOUNT],
        ids[RegistryChange.Kind.ISSUER],
    )
    roles = dict(cached.roles)
    changed_roles: dict[int, RuleRole | None] = {}
    if role_ids or account_ids:
        fresh = _rule_roles(Role.objects.filter(Q(id__in=role_ids) | Q(account_id__in=account_ids)))
        for pk in role_ids - fresh.keys():
            if roles.pop(pk, None) is not None:
                changed_roles[pk] = None  # deleted, and its mappings with it
        for pk, role in fresh.items():
            if roles.get(pk) != role:
                roles[pk] = changed_roles[pk] = role
    issuers, issuer_names, renamed = None, cached.issuer_names, set()
    if issuer_ids:
        registered = registry_issuers()
        issuers = list(registered.values())
        issuer_names = {pk: issuer.name for pk, issuer in registered.items()}
        renamed = {pk for pk, name in cached.issuer_names.items() if pk in issuer_ids and issuer_names.get(pk) != name}
    removed = set(mapping_ids)
    if renamed:  # the rules carry the issuer's name, and are indexed by it: reload them
        old_names = {cached.issuer_names[pk] for pk in renamed}
        removed.update(rule.id for rule in cached.registry.rules() if rule.issuer in old_names)
    rows = list(_rule_rows(Mapping.objects.filter(Q(id__in=mapping_ids) | Q(issuer_id__in=renamed))))
    for row in rows:  # a role this snapshot has no rule of yet (or one the log did not mention)
        role = _role(row)
        if roles.get(role.id) != role:
            roles[role.id] = changed_roles[role.id] = role
    pins, pin_keys = _pins_patched(cached, ids[RegistryChange.Kind.PIN], reload_all=bool(renamed))
    return _Snapshot(
        registry=cached.registry.patched(
            version=at.version,
            removed=removed,
            rules=[_rule(row, roles) for row in rows],
            roles=changed_roles,
            issuers=issuers,
            pins=pins,
        ),
        at=at,
        roles=roles,
        issuer_names=issuer_names,
        pin_keys=pin_keys,
    )


def _pins_patched(
    cached: _Snapshot, pin_ids: set[int], *, reload_all: bool
) -> tuple[Pins | None, Shards[int, tuple[str, str, str]]]:
    """The snapshot's pins after the pin changes ``pin_ids`` (``None``: unchanged)."""
    if reload_all:
        every = registry_pins()
        return Pins(pin for _, pin in every), Shards((pk, pin.key) for pk, pin in every)
    if not pin_ids:
        return None, cached.pin_keys
    found = registry_pins(IdentityPin.objects.filter(id__in=pin_ids))
    gone = [key for pk in pin_ids if (key := cached.pin_keys.get(pk)) is not None]
    pins = cached.registry.pins.changed(drop=gone, put=[pin for _, pin in found])
    pin_keys = cached.pin_keys.changed(drop=pin_ids, put={pk: pin.key for pk, pin in found})
    return pins, pin_keys


def registry_warm() -> None:
    """Build this process's snapshot now (a server process, before it serves), then close the
    connection so that a forking server never shares it. A database that is down is not fatal:
    the first request builds the snapshot instead."""
    try:
        registry()
    except DatabaseError as exc:
        logger.warning("registry not built at start: %s", type(exc).__name__)
    finally:
        connection.close()
