"""Celery tasks of the IAM trust-policy sync: thin, ids only, each calls one service.

Only :class:`~mappings.iam.aws_iam.AwsTransientError` is retried (exponential backoff with
jitter); permanent failures are recorded on the role or account by the service. A deleted row is
a clean exit. Queued by ``mappings.iam.scheduling`` alone (and by the drift scan below).

The tasks keep the names they had in ``mappings/tasks.py`` (``mappings.tasks.sync_role``...):
messages already queued and the beat schedule name them so. ``portal/celery.py`` discovers this
module by name.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypedDict

from celery import shared_task
from django.utils import timezone

from mappings.iam import selectors, services
from mappings.iam.aws_iam import AwsTransientError


class _RetryOptions(TypedDict):
    autoretry_for: tuple[type[BaseException], ...]
    retry_backoff: int
    retry_backoff_max: int
    retry_jitter: bool
    max_retries: int


RETRY: _RetryOptions = {
    "autoretry_for": (AwsTransientError,),
    "retry_backoff": 5,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 8,
}


@shared_task(name="mappings.tasks.sync_role", **RETRY)
def sync_role(role_id: int, dry_run: bool = False) -> list[dict[str, str]]:
    """Bring one role's IAM trust policy in line with its mappings (queued after registry changes)."""
    line = services.role_sync(role_id=role_id, dry_run=dry_run)
    return [line.as_dict()] if line else []


@shared_task(name="mappings.tasks.sync_account", **RETRY)
def sync_account(account_id: int, dry_run: bool = False) -> list[dict[str, str]]:
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


# A queued task not started after this long is presumed lost and may be queued again.
QUEUED_EXPIRY = timedelta(minutes=10)
# How far ahead ``sync_expiries`` queues a sync for the moment a mapping expires: more than its
# beat period (60 s), so a late beat run still leaves no gap.
EXPIRY_LOOKAHEAD = timedelta(seconds=150)


@shared_task(name="mappings.tasks.sync_expiries")
def sync_expiries() -> int:
    """Periodic (beat, every minute): take expired mappings out of IAM on time.

    Syncs at once every role with a mapping that expired after the role's last sync (a missed
    ETA task, a worker restart, a mapping written with a past expiry), and queues a sync for the
    exact moment of every expiry in the next :data:`EXPIRY_LOOKAHEAD` (Celery ``eta``), so
    expiries months ahead never wait in a broker. Returns how many tasks it queued."""
    now = timezone.now()
    queued = 0
    for role_id in selectors.roles_expired_since_sync(now):
        if services.role_sync_claim(role_id=role_id, now=now, expiry=QUEUED_EXPIRY):
            sync_role.apply_async(kwargs={"role_id": role_id})
            queued += 1
    for role_id, moment in selectors.expiries_between(now, now + EXPIRY_LOOKAHEAD):
        sync_role.apply_async(kwargs={"role_id": role_id}, eta=moment)
        queued += 1
    return queued
