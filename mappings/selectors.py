"""Reads of the registry."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime

from django.db.models import QuerySet

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
) -> Rule:
    """The one builder of the matcher's :class:`Rule`, for the registry, a role's IAM sync and a
    proposed configuration file alike: the role ARN is derived from the account id and role name."""
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
    )


def registry_rules(mappings: QuerySet[Mapping] | None = None) -> list[Rule]:
    """Every mapping (live or not), or only ``mappings``, as matcher :class:`Rule` objects."""
    rows = (Mapping.objects.all() if mappings is None else mappings).values_list(
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
    )
    return [
        build_rule(
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
            ci_config_ref_uri,
            environment_protected,
            tiers,
            runner_environment,
            source_identity,
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
