"""What an IAM sync does: the services the Celery tasks in ``mappings.iam.tasks`` call.

Idempotent: compute the desired document, read the live one, write only when their normalised
forms differ, one sync per role at a time (the role's lock is held). A transient AWS failure is
recorded and raised for the task to retry; a permanent one is recorded on the role or account.
Scheduling (queues, brokers) is ``mappings.iam.scheduling``'s business, not this module's.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from mappings import policies, policy_shrink
from mappings.iam import aws_iam, retired, revocations
from mappings.iam.outcomes import DIFFERS, FAILED, UNCHANGED, UPDATED, SyncLine
from mappings.iam.selectors import (
    account_providers,
    policy_diff,
    provider_stale,
    role_desired_policy,
    role_label,
    role_policy_input,
)
from mappings.models import Account, Role
from portal import metrics

logger = logging.getLogger(__name__)

# The fields a sync writes; nothing else of the role is touched (no ``updated_at`` either).
SYNC_FIELDS = [
    "sync_status",
    "synced_at",
    "live_policy",
    "live_policy_sha256",
    "drift",
    "last_error",
    "desired_policy_sha256",
    "policy_size",
    "sync_warnings",
    "missing_mappings",
]
# pg_advisory_xact_lock key space of role syncs: "Role" in the high 32 bits, the role id below.
_LOCK_NAMESPACE = 0x526F6C65 << 32


def lock_role(role_id: int) -> None:
    """Hold the role's sync lock until the transaction ends, so two syncs of one role never
    interleave. On PostgreSQL an advisory lock (registry writes to the row are not blocked while
    the sync talks to AWS); elsewhere a row lock (SQLite serialises writers anyway)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [role_lock_key(role_id)])
    else:
        list(Role.objects.select_for_update().filter(pk=role_id).values_list("pk", flat=True))


def role_lock_key(role_id: int) -> int:
    return _LOCK_NAMESPACE | (role_id & 0xFFFFFFFF)


def role_sync_claim(*, role_id: int, now: datetime, expiry: timedelta) -> bool:
    """Mark the role's sync queued unless one is queued and not started (queued less than
    ``expiry`` ago); True when the caller should queue it. ``role_sync`` clears the mark."""
    return bool(
        Role.objects.filter(pk=role_id)
        .filter(Q(sync_queued_at__isnull=True) | Q(sync_queued_at__lt=now - expiry))
        .update(sync_queued_at=now)
    )


def role_sync(*, role_id: int, dry_run: bool = False) -> SyncLine | None:
    """:func:`_role_sync`, counted by outcome (``rolegate_iam_role_syncs``) unless a dry run."""
    try:
        line = _role_sync(role_id=role_id, dry_run=dry_run)
    except aws_iam.AwsTransientError:
        if not dry_run:
            metrics.IAM_SYNCS.labels(outcome="retrying").inc()
        raise
    if line is not None and not dry_run:
        metrics.IAM_SYNCS.labels(outcome=line.outcome).inc()
    return line


def _role_sync(*, role_id: int, dry_run: bool = False) -> SyncLine | None:
    """Bring one role's trust policy in line with its mappings; ``None`` if the role is gone.

    When the full policy cannot be written (over the quota, a provider that failed, IAM refusing
    it for good), the shrink-only policy is written instead (``mappings.policy_shrink``): the
    live trust minus every trust no longer desired. The role is then ``shrink_only`` with what is
    missing and why, the line says ``failed``, and every later sync (registry change, drift scan)
    tries the full policy again. Then the role's recorded session revocations are written
    (``mappings.iam.revocations``).

    With ``dry_run`` nothing is written (neither IAM nor the database) and the line says
    ``differs`` with a diff when the live policy is not the desired one. A transient AWS failure
    is recorded on the role and raised (the task retries it); a permanent one is recorded.
    """
    transient: aws_iam.AwsTransientError | None = None
    if not dry_run:
        # Started: a change committed from now on queues another sync (see scheduling.role_sync_enqueue).
        Role.objects.filter(pk=role_id).update(sync_queued_at=None)
    with transaction.atomic():
        lock_role(role_id)
        role = Role.objects.select_related("account").filter(pk=role_id).first()
        if role is None:
            return None
        label = role_label(role)
        account = role.account
        result = role_desired_policy(role)
        if not dry_run:
            role.desired_policy_sha256 = policies.policy_sha256(result.document)
            role.policy_size = result.size
            role.sync_warnings = list(result.warnings)
        try:
            provider_failure = ""
            if not dry_run and provider_stale(account):
                failed = [line for line in account_provider_sync(account_id=account.pk) if line.outcome == FAILED]
                provider_failure = "; ".join(line.text() for line in failed)
            live = aws_iam.get_role_trust_policy(role.name, manager_role_arn=account.manager_role_arn)
            if live is None:
                raise aws_iam.AwsPermanentError(
                    "NoSuchEntity",
                    f"IAM role {role.name} does not exist in account {account.account_id}; create it first "
                    "(Rolegate manages trust policies, not roles)",
                )
            if not result.fits:
                line = _shrink_only(role, live, result, why=result.message, dry_run=dry_run)
            elif provider_failure:
                line = _shrink_only(role, live, result, why=f"ProviderFailed: {provider_failure}", dry_run=dry_run)
            else:
                line = _full_sync(role, live, result, dry_run=dry_run)
            note = revocations.revocations_sync(role, dry_run=dry_run)
            if note:
                # A revocation to write (dry run) or just written makes an unchanged trust policy a change.
                outcome = line.outcome if line.outcome != UNCHANGED else DIFFERS if dry_run else UPDATED
                line = SyncLine(label, outcome, "; ".join(filter(None, [line.reason, note])), line.diff)
            return line
        except aws_iam.AwsPermanentError as exc:
            if dry_run:
                return SyncLine(label, FAILED, str(exc))
            _record_failure(role, str(exc))
            revocations.revocations_failed(role, str(exc))
            return SyncLine(label, FAILED, str(exc))
        except aws_iam.AwsTransientError as exc:
            transient = exc
            if not dry_run:
                role.last_error = f"{exc} (will retry)"
                role.save(update_fields=SYNC_FIELDS)
    raise transient


def _full_sync(role: Role, live: dict[str, Any], result: policies.TrustPolicy, *, dry_run: bool) -> SyncLine:
    """Write the desired policy (when it differs); IAM refusing it for good means shrink-only."""
    label = role_label(role)
    differs = not policies.same_policy(live, result.document)
    if dry_run:
        if differs:
            reason = _shrink_note(role) if role.sync_status == Role.SyncStatus.SHRINK_ONLY else ""
            return SyncLine(label, DIFFERS, reason, diff=policy_diff(live, result.document, label=label))
        return SyncLine(label, UNCHANGED)
    live_sha = policies.policy_sha256(live)
    # Drift: IAM no longer holds what Rolegate last wrote or saw (a hand edit).
    role.drift = bool(role.live_policy_sha256) and live_sha != role.live_policy_sha256
    if differs:
        try:
            aws_iam.update_role_trust_policy(role.name, result.text, manager_role_arn=role.account.manager_role_arn)
        except aws_iam.AwsPermanentError as exc:
            return _shrink_only(role, live, result, why=str(exc), dry_run=False)
    _record_written(role, result.text, status=Role.SyncStatus.IN_SYNC, error="", missing=[])
    if role.drift:
        logger.warning("repaired drift of %s's trust policy", label)
    reason = "drift repaired" if role.drift and differs else ""
    return SyncLine(label, UPDATED if differs else UNCHANGED, reason)


def _shrink_only(
    role: Role, live: dict[str, Any], result: policies.PolicyResult, *, why: str, dry_run: bool
) -> SyncLine:
    """Write the live trust minus what is no longer desired; the line is ``failed`` with what
    is missing and why (the full policy is tried again by every later sync)."""
    label = role_label(role)
    fallback = policy_shrink.shrink_only(live, result.document, limit=role.account.trust_policy_limit)
    missing = missing_mappings(role, fallback)
    differs = not policies.same_policy(live, fallback)
    lacking = f"missing {', '.join(missing)}" if missing else "nothing missing"
    if dry_run:
        verb = "a sync would write" if differs else "IAM holds"
        return SyncLine(
            label,
            FAILED,
            f"shrink-only: {verb} the live trust minus what is no longer desired ({lacking}); "
            f"the full policy cannot be written: {why}",
            diff=policy_diff(live, fallback, label=label) if differs else "",
        )
    text = policies.minify(fallback)
    if differs:
        aws_iam.update_role_trust_policy(role.name, text, manager_role_arn=role.account.manager_role_arn)
    _record_written(role, text, status=Role.SyncStatus.SHRINK_ONLY, error=why, missing=missing)
    logger.warning("IAM sync of %s is shrink-only (%s): %s", label, lacking, why)
    verb = "wrote" if differs else "kept"
    return SyncLine(
        label, FAILED, f"shrink-only: {verb} the live trust minus what is no longer desired ({lacking}); {why}"
    )


def _shrink_note(role: Role) -> str:
    missing = ", ".join(role.missing_mappings) or "nothing"
    return f"shrink-only since {role.synced_at:%Y-%m-%d %H:%M:%S}Z (missing {missing}): {role.last_error}"


def missing_mappings(role: Role, policy: dict[str, Any]) -> list[str]:
    """The role's live mappings whose trust ``policy`` does not hold (sound: may name one whose
    trust it does hold in another shape, never misses one)."""
    data = role_policy_input(role)
    names = []
    for rule in policies.live_rules(data.rules, data.now):
        alone = policies.generate(replace(data, rules=(rule,), trust_policy_limit=10**6))
        if alone.document != policies.trusts_nobody() and policy_shrink.missing(policy, alone.document["Statement"]):
            names.append(rule.name)
    return names


def _record_written(role: Role, text: str, *, status: str, error: str, missing: list[str]) -> None:
    role.live_policy = text
    role.live_policy_sha256 = policies.policy_sha256(json.loads(text))
    role.sync_status = status
    role.synced_at = timezone.now()
    role.last_error = error
    role.missing_mappings = missing
    role.save(update_fields=SYNC_FIELDS)


def _record_failure(role: Role, message: str) -> None:
    role.sync_status = Role.SyncStatus.FAILED
    role.last_error = message
    role.synced_at = timezone.now()
    role.save(update_fields=SYNC_FIELDS)
    logger.warning("IAM sync of %s failed: %s", role_label(role), message)


def account_provider_sync(*, account_id: int, dry_run: bool = False) -> list[SyncLine]:
    """Make the account's OIDC provider(s) exist with the right client ids."""
    account = Account.objects.filter(pk=account_id).first()
    if account is None:
        return []
    lines = []
    for url, client_ids in account_providers(account):
        label = f"provider {account.name}/{policies.provider_host(url)}"
        try:
            outcome = aws_iam.ensure_oidc_provider(
                account_id=account.account_id,
                url=url,
                client_ids=client_ids,
                manager_role_arn=account.manager_role_arn,
                dry_run=dry_run,
            )
        except aws_iam.AwsPermanentError as exc:
            lines.append(SyncLine(label, FAILED, str(exc)))
            continue
        lines.append(SyncLine(label, DIFFERS if dry_run and outcome != UNCHANGED else outcome))
    if not dry_run:
        failed = [line for line in lines if line.outcome == FAILED]
        Account.objects.filter(pk=account.pk).update(
            provider_status=Account.SyncStatus.FAILED if failed else Account.SyncStatus.IN_SYNC,
            provider_synced_at=timezone.now(),
            provider_error="\n".join(line.text() for line in failed),
        )
    return lines


def account_sync(*, account_id: int, dry_run: bool = False) -> list[SyncLine]:
    """The account's providers, then each of its roles. A transient failure of a role does not
    stop the others; it is raised at the end so the task retries (unchanged roles cost a read)."""
    lines = account_provider_sync(account_id=account_id, dry_run=dry_run)
    transient: aws_iam.AwsTransientError | None = None
    for role_id in Role.objects.filter(account_id=account_id).order_by("name").values_list("id", flat=True):
        try:
            line = role_sync(role_id=role_id, dry_run=dry_run)
        except aws_iam.AwsTransientError as exc:
            transient = exc
            role = Role.objects.select_related("account").get(pk=role_id)
            line = SyncLine(role_label(role), FAILED, f"{exc} (will retry)")
        if line is not None:
            lines.append(line)
    aws_account_id = Account.objects.filter(pk=account_id).values_list("account_id", flat=True).first()
    if aws_account_id is not None:
        retired_lines, retired_transient = retired.retired_roles_sync(account_ids=[aws_account_id], dry_run=dry_run)
        lines.extend(retired_lines)
        transient = transient or retired_transient
    if transient is not None:
        raise transient
    return lines
