"""What is wrong right now, read from the database and the shared cache: one :class:`Found` per
problem, keyed stably so that the same problem seen twice is the same key."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count
from django.utils import timezone

from console.alerts.models import Problem
from exchange import keys, reasons
from exchange.jwks_status import jwks_status
from exchange.models import AuditEvent
from mappings.models import Issuer, Role, SessionRevocation

# A policy above this fraction of its account's quota is a problem (IAM refuses it past 1.0).
QUOTA_RATIO = 0.9
# A revocation IAM received is announced once ("opened") and "cleared" this long after.
REVOCATION_NOTICE = timedelta(minutes=15)
# A path whose jobs were refused identity_changed is a problem until this long after the last one.
IDENTITY_NOTICE = timedelta(minutes=15)


@dataclass(frozen=True)
class Found:
    key: str
    kind: str
    subject: str
    summary: str


def current_problems() -> list[Found]:
    return [*_roles(), *_revocations(), *_identity_changes(), *_issuers(), *_signing_keys()]


def _roles() -> Iterator[Found]:
    roles = Role.objects.select_related("account").order_by("account__name", "name")
    for role in roles:
        label = f"{role.account.name}/{role.name}"
        if role.sync_status == Role.SyncStatus.FAILED:
            yield Found(
                f"role-sync-failed:{role.pk}",
                Problem.Kind.ROLE_SYNC_FAILED,
                label,
                f"The IAM sync of role {label} failed: {role.last_error or 'no reason recorded'}",
            )
        if role.sync_status == Role.SyncStatus.SHRINK_ONLY:
            missing = ", ".join(role.missing_mappings) or "nothing"
            yield Found(
                f"role-shrink-only:{role.pk}",
                Problem.Kind.ROLE_SHRINK_ONLY,
                label,
                f"Role {label} is shrink-only: IAM lost the trust no longer desired, but its full trust policy "
                f"cannot be written (missing {missing}): {role.last_error or 'no reason recorded'}",
            )
        limit = role.account.trust_policy_limit
        if role.policy_size is not None and limit and role.policy_size / limit > QUOTA_RATIO:
            yield Found(
                f"policy-near-quota:{role.pk}",
                Problem.Kind.POLICY_NEAR_QUOTA,
                label,
                f"The trust policy of role {label} is {role.policy_size} of {limit} characters "
                f"({role.policy_size / limit:.0%} of the account's quota)",
            )
        if role.drift and role.sync_status == Role.SyncStatus.IN_SYNC:
            yield Found(
                f"drift-repaired:{role.pk}",
                Problem.Kind.DRIFT_REPAIRED,
                label,
                f"The trust policy of role {label} had been changed in IAM by hand; Rolegate wrote it back",
            )


def _revocations() -> Iterator[Found]:
    """Revocations of live sessions that IAM received recently (an event, not a lasting state)."""
    recent = SessionRevocation.objects.filter(applied_at__gte=timezone.now() - REVOCATION_NOTICE)
    for revocation in recent.order_by("applied_at", "id"):
        cutoff = revocation.cutoff.isoformat().replace("+00:00", "Z") if revocation.cutoff else "now"
        yield Found(
            f"revocation:{revocation.pk}",
            Problem.Kind.REVOCATION_PERFORMED,
            revocation.role_label,
            f"Live sessions of role {revocation.role_label} issued before {cutoff} were revoked "
            f"(by {revocation.actor}: {revocation.reason})",
        )


def _identity_changes() -> Iterator[Found]:
    """Paths whose jobs were refused recently because they are pinned to another GitLab id
    (docs/trust-model.md#identity-pins): a renamed, re-created or reclaimed project or namespace
    that someone has to look at, and accept if it is legitimate. One indexed query (reason)."""
    recent = (
        AuditEvent.objects.filter(reason=reasons.IDENTITY_CHANGED, time__gte=timezone.now() - IDENTITY_NOTICE)
        .values_list("issuer", "project_path")
        .annotate(refused=Count("id"))
        .order_by("issuer", "project_path")
    )
    for issuer, path, refused in recent:
        where = f"{issuer}:{path}"
        key = f"identity-changed:{where if len(where) <= 160 else hashlib.sha256(where.encode()).hexdigest()}"
        yield Found(
            key,
            Problem.Kind.IDENTITY_CHANGED,
            f"{issuer} {path}"[:200],
            f"Rolegate refused {refused} job(s) of project {path} (issuer {issuer}) in the last "
            f"{IDENTITY_NOTICE.seconds // 60} minutes because the path is pinned to another GitLab id "
            "(identity_changed): the project or its namespace was renamed, re-created or reclaimed. If the change is "
            "legitimate, accept it (manage.py accept_identity_change, or the admin's identity pins).",
        )


def _issuers() -> Iterator[Found]:
    for name in Issuer.objects.order_by("name").values_list("name", flat=True):
        status = jwks_status(name)
        if status is not None and not status.get("ok"):
            yield Found(
                f"jwks-unreachable:{name}",
                Problem.Kind.JWKS_UNREACHABLE,
                name,
                f"The signing keys (JWKS) of issuer {name} could not be fetched: {status.get('error')}",
            )


def _signing_keys() -> Iterator[Found]:
    problems = keys.signing_key_problems()
    if problems:
        yield Found(
            "signing-key-unusable",
            Problem.Kind.SIGNING_KEY_UNUSABLE,
            "signing key",
            "Rolegate cannot use its signing key: " + "; ".join(problems),
        )
