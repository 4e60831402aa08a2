"""Roles Rolegate stopped managing: their IAM trust policies are emptied, not forgotten.

IAM keeps a role's last trust policy. When a role is deleted, renamed or moved to another
account in Rolegate, the old IAM role would go on trusting the jobs its mappings used to grant;
the registry services record a :class:`~mappings.models.RetiredRole` in the same transaction,
and the next sync of that AWS account (``sync_iam``, the worker's drift scan, or the task queued
after commit) writes it a policy that trusts nobody, then forgets it.
"""

from __future__ import annotations

from collections.abc import Iterable

from mappings import policies
from mappings.iam import aws_iam
from mappings.iam.outcomes import DIFFERS, FAILED, UNCHANGED, UPDATED, SyncLine
from mappings.models import Account, RetiredRole, Role


def role_retire(*, account_id: str, role_name: str, manager_role_arn: str | None) -> None:
    """Inside the writing transaction: this IAM role's trust policy must be emptied."""
    RetiredRole.objects.update_or_create(
        account_id=account_id,
        role_name=role_name,
        defaults={"manager_role_arn": manager_role_arn, "last_error": ""},
    )


def role_identity_changed(role: Role) -> None:
    """Before saving ``role``: retire the IAM role it named until now if it names another one,
    and un-retire the one it names (a role re-created under a retired name is managed again)."""
    if role.pk:
        before = Role.objects.select_related("account").filter(pk=role.pk).first()
        if before is not None and (before.name, before.account.account_id) != (role.name, role.account.account_id):
            role_retire(
                account_id=before.account.account_id,
                role_name=before.name,
                manager_role_arn=before.account.manager_role_arn,
            )
    RetiredRole.objects.filter(account_id=role.account.account_id, role_name=role.name).delete()


def account_identity_changed(account: Account) -> None:
    """Before saving ``account``: a new AWS account id leaves every role in the old one."""
    if not account.pk:
        return
    before = Account.objects.filter(pk=account.pk).first()
    if before is None or before.account_id == account.account_id:
        return
    for name in Role.objects.filter(account_id=account.pk).values_list("name", flat=True):
        role_retire(account_id=before.account_id, role_name=name, manager_role_arn=before.manager_role_arn)


def retired_roles_sync(
    *, account_ids: Iterable[str], dry_run: bool = False
) -> tuple[list[SyncLine], aws_iam.AwsTransientError | None]:
    """Empty the trust policy of every retired role in these AWS accounts: one line each, and
    the last transient failure for the caller to raise after its other work (the task retries).

    A role already gone from IAM is forgotten; a failure is kept with its error.
    """
    lines: list[SyncLine] = []
    transient: aws_iam.AwsTransientError | None = None
    nobody = policies.minify(policies.trusts_nobody())
    for retired in RetiredRole.objects.filter(account_id__in=list(account_ids)):
        label = f"retired role {retired.account_id}/{retired.role_name}"
        if dry_run:
            lines.append(SyncLine(label, DIFFERS, "no longer managed; the next sync empties its trust policy"))
            continue
        try:
            aws_iam.update_role_trust_policy(retired.role_name, nobody, manager_role_arn=retired.manager_role_arn)
        except aws_iam.AwsPermanentError as exc:
            if exc.code == "NoSuchEntity":
                retired.delete()
                lines.append(SyncLine(label, UNCHANGED, "gone from IAM"))
            else:
                RetiredRole.objects.filter(pk=retired.pk).update(last_error=str(exc))
                lines.append(SyncLine(label, FAILED, str(exc)))
            continue
        except aws_iam.AwsTransientError as exc:
            transient = exc
            RetiredRole.objects.filter(pk=retired.pk).update(last_error=f"{exc} (will retry)")
            lines.append(SyncLine(label, FAILED, f"{exc} (will retry)"))
            continue
        retired.delete()
        lines.append(SyncLine(label, UPDATED, "trusts nobody now"))
    return lines, transient
