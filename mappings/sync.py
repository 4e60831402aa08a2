"""The IAM trust-policy sync: scheduling, and the services the Celery tasks call.

``schedule_role_sync`` is called by ``mappings.services`` inside the transaction that changed the
registry. It marks the touched roles pending and, after commit, queues one ``sync_role`` task per
role, at most one queued at a time (``Role.sync_queued_at``), so a burst of writes (an ``apply``
of 500 mappings) costs one task per role. Without a broker nothing is queued: a web request never
calls AWS in-process; ``manage.py sync_iam`` (or a worker's drift scan) brings the roles in line.

The sync itself is idempotent: compute the desired document, read the live one, write only when
their normalised forms differ, one sync per role at a time (the role row is locked).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Q
from django.utils import timezone

from mappings import aws_iam, policies, retired
from mappings.matching import Rule
from mappings.models import Account, Issuer, Mapping, Role

logger = logging.getLogger(__name__)

# A queued task not started after this long is presumed lost and may be queued again.
QUEUED_EXPIRY = timedelta(minutes=10)
# Seconds a queued sync waits, so writes in quick succession land in one sync.
COALESCE_COUNTDOWN = 2

UNCHANGED, CREATED, UPDATED, FAILED, DIFFERS = "unchanged", "created", "updated", "failed", "differs"


@dataclass(frozen=True, slots=True)
class SyncLine:
    """One line of a sync report: ``<label>: <outcome>[: <reason>]`` (JSON-friendly)."""

    label: str
    outcome: str
    reason: str = ""
    diff: str = ""

    def text(self) -> str:
        return f"{self.label}: {self.outcome}" + (f": {self.reason}" if self.reason else "")

    def as_dict(self) -> dict:
        return asdict(self)


# --- scheduling ----------------------------------------------------------------------------------


def broker_configured() -> bool:
    return bool(settings.CELERY_BROKER_URL)


def schedule_role_sync(*, role_ids: Iterable[int]) -> None:
    """Mark ``role_ids`` pending and, after commit, queue one sync per role (with a broker)."""
    ids = sorted({role_id for role_id in role_ids if role_id})
    if not ids:
        return
    Role.objects.filter(pk__in=ids).update(sync_status=Role.SyncStatus.PENDING)
    if not broker_configured():
        return
    _pending_ids().update(ids)
    # Registered on every call: the first callback to run drains the set, the rest find it empty.
    # (A set left by a rolled-back transaction is drained by the next commit: one spare sync.)
    transaction.on_commit(_enqueue_pending, robust=True)


def _pending_ids() -> set[int]:
    """Role ids scheduled on this thread's database connection and not queued yet."""
    return connections[DEFAULT_DB_ALIAS].__dict__.setdefault("rolegate_iam_pending", set())


def _enqueue_pending() -> None:
    pending = _pending_ids()
    ids = sorted(pending)
    pending.clear()
    for role_id in ids:
        role_sync_enqueue(role_id=role_id)


def role_sync_enqueue(*, role_id: int) -> bool:
    """Queue ``sync_role`` unless one is already queued and not yet started; True if queued."""
    from mappings.tasks import sync_role

    now = timezone.now()
    claimed = (
        Role.objects.filter(pk=role_id)
        .filter(Q(sync_queued_at__isnull=True) | Q(sync_queued_at__lt=now - QUEUED_EXPIRY))
        .update(sync_queued_at=now)
    )
    if not claimed:
        return False
    try:
        sync_role.apply_async(kwargs={"role_id": role_id}, countdown=COALESCE_COUNTDOWN)
    except Exception:
        # Not queued after all (broker down): let the next change, or the drift scan, try again.
        Role.objects.filter(pk=role_id, sync_queued_at=now).update(sync_queued_at=None)
        raise
    return True


# --- reads ---------------------------------------------------------------------------------------


def role_policy_input(role: Role) -> policies.PolicyInput:
    """The generator's input for ``role``, read from the database."""
    account = role.account
    rules = role_rules(role)
    issuer_names = {rule.issuer for rule in rules}
    issuers = tuple(
        policies.IssuerInfo(name=i.name, url=i.url, audiences=tuple(i.audiences))
        for i in Issuer.objects.filter(name__in=issuer_names).order_by("name")
    )
    return policies.PolicyInput(
        account_id=account.account_id,
        mode=account.mode,
        audience=account.audience,
        trust_policy_limit=account.trust_policy_limit,
        session_tags=role.session_tags,
        rolegate_issuer=settings.ROLEGATE_ISSUER,
        issuers=issuers,
        rules=tuple(rules),
        now=timezone.now(),
    )


def role_rules(role: Role) -> list[Rule]:
    """The role's mappings (live or not) as matcher rules. Read directly rather than from the
    cached registry snapshot: a sync must see the committed state, and costs one query."""
    account = role.account
    return [
        Rule(
            id=m.pk,
            name=m.name,
            issuer=m.issuer.name,
            role_arn=role.arn,
            role_name=role.name,
            account_name=account.name,
            account_id=account.account_id,
            account_mode=account.mode,
            account_audience=account.audience,
            max_session_seconds=role.max_session_seconds,
            session_tags=role.session_tags,
            project=m.project,
            ref=m.ref,
            ref_type=m.ref_type,
            protected=m.protected,
            environment=m.environment,
            pipeline_sources=tuple(m.pipeline_sources or ()),
            expires_at=m.expires_at,
            enabled=m.enabled,
        )
        for m in Mapping.objects.filter(role=role).select_related("issuer").order_by("name")
    ]


def role_desired_policy(role: Role) -> policies.PolicyResult:
    """The trust policy the role should have now."""
    return policies.generate(role_policy_input(role))


def account_providers(account: Account) -> list[tuple[str, list[str]]]:
    """The OIDC providers (issuer URL, client ids) the account's roles trust."""
    if account.mode == Account.Mode.BROKERED:
        return [(settings.ROLEGATE_ISSUER, [account.audience])]
    issuers = Issuer.objects.filter(mappings__role__account=account).distinct().order_by("name")
    return [(issuer.url, list(issuer.audiences)) for issuer in issuers]


def policy_diff(live: object, desired: object, *, label: str) -> str:
    """A unified diff of the normalised documents, for people."""
    before = policies.pretty(policies.normalise(live)).splitlines(keepends=True) if live is not None else []
    after = policies.pretty(policies.normalise(desired)).splitlines(keepends=True)
    return "".join(difflib.unified_diff(before, after, fromfile=f"{label} (live)", tofile=f"{label} (desired)"))


# --- services ------------------------------------------------------------------------------------


def role_label(role: Role) -> str:
    return f"role {role.account.name}/{role.name}"


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


def role_sync(*, role_id: int, dry_run: bool = False) -> SyncLine | None:
    """Bring one role's trust policy in line with its mappings; ``None`` if the role is gone.

    With ``dry_run`` nothing is written (neither IAM nor the database) and the line says
    ``differs`` with a diff when the live policy is not the desired one. A transient AWS failure
    is recorded on the role and raised (the task retries it); a permanent one is recorded.
    """
    transient: aws_iam.AwsTransientError | None = None
    if not dry_run:
        # Started: a change committed from now on queues another sync (see role_sync_enqueue).
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
        if not result.fits:
            line = SyncLine(label, FAILED, result.message)
            if not dry_run:
                _record_failure(role, result.message)
            return line
        try:
            if not dry_run and provider_stale(account):
                failed = [line for line in account_provider_sync(account_id=account.pk) if line.outcome == FAILED]
                if failed:
                    raise aws_iam.AwsPermanentError("ProviderFailed", "; ".join(line.text() for line in failed))
            live = aws_iam.get_role_trust_policy(role.name, manager_role_arn=account.manager_role_arn)
            if live is None:
                raise aws_iam.AwsPermanentError(
                    "NoSuchEntity",
                    f"IAM role {role.name} does not exist in account {account.account_id}; create it first "
                    "(Rolegate manages trust policies, not roles)",
                )
            differs = not policies.same_policy(live, result.document)
            if dry_run:
                if differs:
                    return SyncLine(label, DIFFERS, diff=policy_diff(live, result.document, label=label))
                return SyncLine(label, UNCHANGED)
            live_sha = policies.policy_sha256(live)
            # Drift: IAM no longer holds what Rolegate last wrote or saw (a hand edit).
            role.drift = bool(role.live_policy_sha256) and live_sha != role.live_policy_sha256
            if differs:
                aws_iam.update_role_trust_policy(role.name, result.text, manager_role_arn=account.manager_role_arn)
            role.live_policy = result.text
            role.live_policy_sha256 = result.sha256
            role.sync_status = Role.SyncStatus.IN_SYNC
            role.synced_at = timezone.now()
            role.last_error = ""
            role.save(update_fields=SYNC_FIELDS)
            if role.drift:
                logger.warning("repaired drift of %s's trust policy", label)
            reason = "drift repaired" if role.drift and differs else ""
            return SyncLine(label, UPDATED if differs else UNCHANGED, reason)
        except aws_iam.AwsPermanentError as exc:
            if dry_run:
                return SyncLine(label, FAILED, str(exc))
            _record_failure(role, str(exc))
            return SyncLine(label, FAILED, str(exc))
        except aws_iam.AwsTransientError as exc:
            transient = exc
            if not dry_run:
                role.last_error = f"{exc} (will retry)"
                role.save(update_fields=SYNC_FIELDS)
    raise transient


def _record_failure(role: Role, message: str) -> None:
    role.sync_status = Role.SyncStatus.FAILED
    role.last_error = message
    role.synced_at = timezone.now()
    role.save(update_fields=SYNC_FIELDS)
    logger.warning("IAM sync of %s failed: %s", role_label(role), message)


def provider_stale(account: Account) -> bool:
    """Whether the account's provider(s) may not match the registry: never synced, failed, or the
    account (or, in direct mode, one of its issuers) changed since the last provider sync."""
    synced = account.provider_synced_at
    if account.provider_status != Account.SyncStatus.IN_SYNC or synced is None or account.updated_at > synced:
        return True
    if account.mode == Account.Mode.DIRECT:
        return Issuer.objects.filter(mappings__role__account=account, updated_at__gt=synced).exists()
    return False


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


def drift_scan() -> int:
    """Queue ``sync_account`` for every account; returns how many were queued."""
    from mappings.tasks import sync_account

    ids = list(Account.objects.order_by("name").values_list("id", flat=True))
    for account_id in ids:
        sync_account.delay(account_id=account_id)
    return len(ids)
