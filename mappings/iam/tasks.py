"""Celery tasks of the IAM trust-policy sync: thin, ids only, each calls one service.

Only :class:`~mappings.iam.aws_iam.AwsTransientError` is retried (exponential backoff with
jitter); permanent failures are recorded on the role or account by the service. A deleted row is
a clean exit. Queued by ``mappings.iam.scheduling`` alone (and by the drift scan below).

The tasks keep the names they had in ``mappings/tasks.py`` (``mappings.tasks.sync_role``...):
messages already queued and the beat schedule name them so. ``portal/celery.py`` discovers this
module by name.
"""

from __future__ import annotations

from celery import shared_task

from mappings.iam import selectors, services
from mappings.iam.aws_iam import AwsTransientError

RETRY = {
    "autoretry_for": (AwsTransientError,),
    "retry_backoff": 5,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 8,
}


@shared_task(name="mappings.tasks.sync_role", **RETRY)
def sync_role(role_id: int, dry_run: bool = False) -> list[dict]:
    """Bring one role's IAM trust policy in line with its mappings (queued after registry changes)."""
    line = services.role_sync(role_id=role_id, dry_run=dry_run)
    return [line.as_dict()] if line else []


@shared_task(name="mappings.tasks.sync_account", **RETRY)
def sync_account(account_id: int, dry_run: bool = False) -> list[dict]:
    """Ensure an account's OIDC provider(s), then sync each of its roles (``sync_iam``, drift scan)."""
    return [line.as_dict() for line in services.account_sync(account_id=account_id, dry_run=dry_run)]


@shared_task(name="mappings.tasks.scan_drift")
def scan_drift() -> int:
    """Periodic (beat): queue ``sync_account`` for every account, repairing hand edits of trust
    policies in IAM and retrying failed syncs; returns how many were queued."""
    account_ids = selectors.account_ids()
    for account_id in account_ids:
        sync_account.delay(account_id=account_id)
    return len(account_ids)
