"""Reads of the registry."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Q, QuerySet

from mappings.matching import Pin, Pins, RegisteredIssuer, Registry, Rule, Shards
from mappings.models import IdentityPin, Issuer, Mapping, RegistryChange, RegistryVersion, role_arn

logger = logging.getLogger(__name__)
_lock = threading.Lock()


def registry_version() -> int:
    row = RegistryVersion.objects.filter(pk=1).values_list("version", flat=True).first()
    return row or 0


def _registry_stamp() -> tuple[int, object]:
    row = RegistryVersion.objects.filter(pk=1).values_list("version", "stamp").first()
    return row or (0, None)


def build_rule(
    *,
    id: int,
    name: str,
    issuer: str,
    account_id: str,
    role_name: str,
    account_name: str,
    account_mode: str,
    account_audience: str,
    max_session_seconds: int,
    session_tags: bool,
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
    account_source_identity: bool = False,
    pin_identity: bool | None = None,
    project_id: str | None = None,
    namespace_id: str | None = None,
) -> Rule:
    """The one builder of the matcher's :class:`Rule`, for the registry, a role's IAM sync and a
    proposed configuration file alike: the role ARN is derived from the account id and role name,
    and a mapping's ``pin_identity`` of ``None`` takes the registry default (``ROLEGATE_PIN_IDENTITY``)."""
    return Rule(
        id=id,
        name=name,
        issuer=issuer,
        role_arn=role_arn(account_id, role_name),
        role_name=role_name,
        account_name=account_name,
        account_id=account_id,
        account_mode=account_mode,
        account_audience=account_audience,
        max_session_seconds=max_session_seconds,
        session_tags=session_tags,
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
        account_source_identity=account_source_identity,
        pin_identity=settings.ROLEGATE_PIN_IDENTITY if pin_identity is None else pin_identity,
        project_id=project_id or None,
        namespace_id=namespace_id or None,
    )


def _rule_rows(mappings: QuerySet[Mapping], *more: str) -> QuerySet[Mapping, tuple[Any, ...]]:
    """The columns :func:`_rule` reads, in its order, then ``more``."""
    return mappings.values_list(
        "id",
        "name",
        "issuer__name",
        "role__account__account_id",
        "role__name",
        "role__account__name",
        "role__account__mode",
        "role__account__audience",
        "role__max_session_seconds",
        "role__session_tags",
        "project",
        "ref",
        "ref_type",
        "protected",
        "environment",
        "pipeline_sources",
        "expires_at",
        "enabled",
        "ci_config_ref_uri",
        "environment_protected",
        "deployment_tiers",
        "runner_environment",
        "role__account__source_identity",
        "pin_identity",
        "project_id",
        "namespace_id",
        *more,
    )


_RULE_WIDTH = 26  # the columns of _rule_rows before ``more``


def _rule(row: tuple[Any, ...]) -> Rule:
    (
        pk,
        name,
        issuer,
        account_id,
        role_name,
        account_name,
        mode,
        audience,
        max_session,
        session_tags,
        project,
        ref,
        ref_type,
        protected,
        environment,
        sources,
        expires_at,
        enabled,
        ci_config_ref_uri,
        environment_protected,
        tiers,
        runner_environment,
        source_identity,
        pin_identity,
        project_id,
        namespace_id,
    ) = row[:_RULE_WIDTH]
    return build_rule(
        id=pk,
        name=name,
        issuer=issuer,
        account_id=account_id,
        role_name=role_name,
        account_name=account_name,
        account_mode=mode,
        account_audience=audience,
        max_session_seconds=max_session,
        session_tags=session_tags,
        project=project,
        ref=ref,
        ref_type=ref_type,
        protected=protected,
        environment=environment,
        pipeline_sources=sources,
        expires_at=expires_at,
        enabled=enabled,
        ci_config_ref_uri=ci_config_ref_uri,
        environment_protected=environment_protected,
        deployment_tiers=tiers,
        runner_environment=runner_environment,
        account_source_identity=source_identity,
        pin_identity=pin_identity,
        project_id=project_id,
        namespace_id=namespace_id,
    )


def registry_rules(mappings: QuerySet[Mapping] | None = None) -> list[Rule]:
    """Every mapping (live or not), or only ``mappings``, as matcher :class:`Rule` objects."""
    return [_rule(row) for row in _rule_rows(Mapping.objects.all() if mappings is None else mappings)]


def registry_issuers() -> list[RegisteredIssuer]:
    """Every registered issuer, as plain values for verifying tokens."""
    return [
        RegisteredIssuer(name=name, url=url, audiences=tuple(audiences or ()), jwks_url=jwks_url or None)
        for name, url, audiences, jwks_url in Issuer.objects.values_list("name", "url", "audiences", "jwks_url")
    ]


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
    for each mapping id the ids of the rows its rule was built from (role, account, issuer), and
    for each pin id its key."""

    registry: Registry
    version: int
    stamp: object
    refs: Shards[int, tuple[int, int, int]]
    pin_keys: Shards[int, tuple[str, str, str]]


_cached: _Snapshot | None = None


def registry() -> Registry:
    """The current registry (rules and issuers), cached per process and refreshed when its version
    moves (every write to an issuer, account, role or mapping moves it).

    Costs one primary-key read per call; a change committed by any process is seen on the next
    call of every process. The refresh reads only what changed since this process's version
    (``RegistryChange``) and patches the snapshot; it rebuilds everything only on a process's
    first call, after a bulk write, or when the log no longer reaches back to its version.
    """
    global _cached
    version, stamp = _registry_stamp()
    cached = _cached
    if cached is not None and (cached.version, cached.stamp) == (version, stamp):
        return cached.registry
    with _lock:
        cached = _cached
        if cached is None or (cached.version, cached.stamp) != (version, stamp):
            _cached = cached = _refreshed(cached, version, stamp)
        return cached.registry


def _refreshed(cached: _Snapshot | None, version: int, stamp: object) -> _Snapshot:
    """The next snapshot, read in one database snapshot: the version, the change log and the rows
    are consistent with each other even while other processes write. (Inside a caller's
    transaction -- a console page, a test -- that transaction's reads are used as they are.)"""
    if connection.in_atomic_block:
        return _read(cached, version, stamp)
    with transaction.atomic():
        if connection.vendor == "postgresql":  # the first statement: every read below sees one snapshot
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return _read(cached, *_registry_stamp())


def _read(cached: _Snapshot | None, version: int, stamp: object) -> _Snapshot:
    if cached is not None and cached.version < version:
        changes = list(
            RegistryChange.objects.filter(version__gte=cached.version).values_list(
                "version", "stamp", "kind", "object_id"
            )
        )
        if _continuous(changes, cached, version, stamp):
            return _patched(cached, [c for c in changes if c[0] > cached.version], version, stamp)
    return _built(version, stamp)


def _continuous(changes: list[tuple[Any, ...]], cached: _Snapshot, version: int, stamp: object) -> bool:
    """Whether ``changes`` lead from the cached snapshot to ``version``: the log still holds the
    cached version with its stamp (same history, not pruned) and the current one, and nothing
    after the cached version is a bulk write."""
    seen = {(v, s) for v, s, _, _ in changes}
    return (
        (cached.version, cached.stamp) in seen
        and (version, stamp) in seen
        and not any(v > cached.version and kind == RegistryChange.Kind.ALL for v, _, kind, _ in changes)
    )


_REF_COLUMNS = ("role_id", "role__account_id", "issuer_id")


def _built(version: int, stamp: object) -> _Snapshot:
    rows = list(_rule_rows(Mapping.objects.all(), *_REF_COLUMNS))
    pins = registry_pins()
    n = _RULE_WIDTH
    snapshot = _Snapshot(
        registry=Registry(
            [_rule(row) for row in rows], version=version, issuers=registry_issuers(), pins=(pin for _, pin in pins)
        ),
        version=version,
        stamp=stamp,
        refs=Shards((row[0], row[n:]) for row in rows),
        pin_keys=Shards((pk, pin.key) for pk, pin in pins),
    )
    # The snapshot's objects (several per mapping) live until the next full build: keep them out
    # of the garbage collector's full passes, which would otherwise walk them all, during
    # whichever request triggers one.
    del rows
    gc.freeze()
    return snapshot


def _patched(cached: _Snapshot, changes: list[tuple[Any, ...]], version: int, stamp: object) -> _Snapshot:
    """Reload the mappings a change can reach -- changed mappings, and every mapping of a changed
    role, account or issuer -- and drop the rules they replace or that are gone; reload the
    changed pins (all of them when an issuer changed: pins are keyed by its name)."""
    ids: dict[str, set[int]] = {kind: set() for kind in RegistryChange.Kind.values}
    for _, _, kind, object_id in changes:
        ids[kind].add(object_id)
    mapping_ids, role_ids, account_ids, issuer_ids = (
        ids[RegistryChange.Kind.MAPPING],
        ids[RegistryChange.Kind.ROLE],
        ids[RegistryChange.Kind.ACCOUNT],
        ids[RegistryChange.Kind.ISSUER],
    )
    removed = set(mapping_ids)
    if role_ids or account_ids or issuer_ids:
        removed.update(
            pk
            for pk, (role, account, issuer) in cached.refs.items()
            if role in role_ids or account in account_ids or issuer in issuer_ids
        )
    reach = Q(id__in=mapping_ids) | Q(role_id__in=role_ids) | Q(role__account_id__in=account_ids)
    rows = list(_rule_rows(Mapping.objects.filter(reach | Q(issuer_id__in=issuer_ids)), *_REF_COLUMNS))
    n = _RULE_WIDTH
    refs = cached.refs.changed(put={row[0]: row[n:] for row in rows}, drop=removed)
    pins, pin_keys = _pins_patched(cached, ids[RegistryChange.Kind.PIN], reload_all=bool(issuer_ids))
    return _Snapshot(
        registry=cached.registry.patched(
            version=version,
            removed=removed,
            rules=[_rule(row) for row in rows],
            issuers=registry_issuers() if issuer_ids else None,
            pins=pins,
        ),
        version=version,
        stamp=stamp,
        refs=refs,
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
