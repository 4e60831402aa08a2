"""Reads of the registry."""

from __future__ import annotations

import threading

from mappings.matching import RegisteredIssuer, Registry, Rule
from mappings.models import Issuer, Mapping, RegistryVersion, role_arn

_lock = threading.Lock()
_cached: tuple[object, Registry] | None = None


def registry_version() -> int:
    row = RegistryVersion.objects.filter(pk=1).values_list("version", flat=True).first()
    return row or 0


def _registry_stamp() -> tuple[int, object]:
    row = RegistryVersion.objects.filter(pk=1).values_list("version", "stamp").first()
    return row or (0, None)


def registry_rules() -> list[Rule]:
    """Every mapping (live or not) as a matcher :class:`Rule`."""
    rows = Mapping.objects.values_list(
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
    )
    return [
        Rule(
            id=pk,
            name=name,
            issuer=issuer,
            role_arn=role_arn(account_id, role_name),
            role_name=role_name,
            account_name=account_name,
            account_id=account_id,
            account_mode=mode,
            account_audience=audience,
            max_session_seconds=max_session,
            session_tags=session_tags,
            project=project,
            ref=ref,
            ref_type=ref_type,
            protected=protected,
            environment=environment,
            pipeline_sources=tuple(sources or ()),
            expires_at=expires_at,
            enabled=enabled,
        )
        for (
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
        ) in rows
    ]


def registry_issuers() -> list[RegisteredIssuer]:
    """Every registered issuer, as plain values for verifying tokens."""
    return [
        RegisteredIssuer(name=name, url=url, audiences=tuple(audiences or ()), jwks_url=jwks_url or None)
        for name, url, audiences, jwks_url in Issuer.objects.values_list("name", "url", "audiences", "jwks_url")
    ]


def registry() -> Registry:
    """The current registry (rules and issuers), cached per process and rebuilt when its version
    moves (every write to an issuer, account, role or mapping moves it).

    Costs one primary-key read per call; a change committed by any process is seen on the next
    call of every process.
    """
    global _cached
    version, stamp = _registry_stamp()
    key = (version, stamp)
    cached = _cached
    if cached is not None and cached[0] == key:
        return cached[1]
    with _lock:
        if _cached is None or _cached[0] != key:
            _cached = (key, Registry(registry_rules(), version=version, issuers=registry_issuers()))
        return _cached[1]
