"""Revoking a role's live sessions: recorded by the registry's writes and by people, written to
IAM by the role's sync as AWS's revoke-older-sessions inline policy (``mappings.session_policy``).

IAM keeps honouring credentials already issued for up to the role's session length after their
trust is gone. On an account with ``revoke_sessions_on_removal``, removing or disabling a mapping
records a :class:`~mappings.models.SessionRevocation` in the writing transaction; the role's next
sync writes the narrowed trust policy, then the inline policy denying everything to sessions
issued before that moment. The admin's action and ``manage.py revoke_sessions`` record one with
a cut-off of their own. The cut-off in IAM only moves forward, and no other policy of the role is
ever read or written.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from mappings import policies, session_policy
from mappings.iam import aws_iam
from mappings.models import Mapping, Role, SessionRevocation


def _label(role: Role) -> str:
    return f"{role.account.name}/{role.name}"


def session_revoke(*, role: Role, actor: str, reason: str, cutoff: datetime | None = None) -> SessionRevocation:
    """Record that ``role``'s sessions issued before ``cutoff`` (None: before the role's next
    trust-policy write) must be revoked; the caller schedules the role's sync."""
    return SessionRevocation.objects.create(
        role=role, role_label=_label(role), cutoff=cutoff, actor=actor, reason=reason[:500]
    )


def mapping_removed(mapping: Mapping, *, role_id: int | None, actor: str, why: str) -> None:
    """Inside the writing transaction: ``mapping`` no longer grants ``role_id``; revoke the role's
    live sessions if its account opted in."""
    role = Role.objects.select_related("account").filter(pk=role_id).first() if role_id else None
    if role is not None and role.account.revoke_sessions_on_removal:
        session_revoke(role=role, actor=actor, reason=f"mapping {mapping.name} {why}")


def pending(role: Role) -> list[SessionRevocation]:
    return list(SessionRevocation.objects.filter(role=role, applied_at__isnull=True).order_by("id"))


def revocations_sync(role: Role, *, dry_run: bool = False) -> str:
    """Bring the role's revoke-older-sessions policy in IAM up to its recorded revocations; a
    sentence for the sync's line ("" when nothing to say). Run after the trust policy is written,
    so a cut-off of "now" covers every session the old trust policy let in. AWS errors propagate
    (permanent ones are recorded on the pending revocations by the caller)."""
    waiting = pending(role)
    if not waiting and role.sessions_revoked_before is None:
        return ""
    now = timezone.now()
    wanted = session_policy.whole_second(
        max(c for c in [role.sessions_revoked_before, *(r.cutoff or now for r in waiting)] if c is not None)
    )
    arn = role.account.manager_role_arn
    live = session_policy.cutoff_of(
        aws_iam.get_role_inline_policy(role.name, session_policy.POLICY_NAME, manager_role_arn=arn)
    )
    if live is not None and live >= wanted:
        wanted = live  # only ever forward
        written = False
    else:
        written = True
    text = session_policy.cutoff_text(wanted)
    if dry_run:
        return f"sessions issued before {text} are not revoked in IAM yet" if written else ""
    if written:
        document = session_policy.revoke_older_sessions(wanted)
        aws_iam.put_role_inline_policy(
            role.name, session_policy.POLICY_NAME, policies.minify(document), manager_role_arn=arn
        )
    for revocation in waiting:
        SessionRevocation.objects.filter(pk=revocation.pk).update(
            cutoff=revocation.cutoff or now, applied_at=now, last_error=""
        )
    Role.objects.filter(pk=role.pk).update(sessions_revoked_before=wanted)
    role.sessions_revoked_before = wanted
    return f"revoked sessions issued before {text}" if written else ""


def revocations_failed(role: Role, message: str) -> None:
    SessionRevocation.objects.filter(role=role, applied_at__isnull=True).update(last_error=message)
