"""Requesting IAM syncs: the only module that knows whether a broker is configured, and the only
importer of the sync tasks (``mappings.iam.tasks``).

- :func:`schedule_role_sync` is called by ``mappings.services`` inside the transaction that
  changed the registry. It marks the touched roles pending and, after commit, queues one
  ``sync_role`` task per role, at most one queued at a time (``Role.sync_queued_at``), so a burst
  of writes (an ``apply`` of 500 mappings) costs one task per role.
- :func:`schedule_account_sync` queues an account's whole sync after commit (a deleted role's
  IAM role is emptied by it).
- :func:`sync_request` is what a person asks for (the admin's "Sync IAM now", ``sync_iam``).

Without a broker nothing is queued: a web request never calls AWS on its own; ``manage.py
sync_iam``, the admin's action (both run the sync in-process then) or a worker's drift scan bring
the roles in line.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING

from celery.exceptions import Retry
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

from mappings.iam import selectors, services, tasks
from mappings.iam.aws_iam import AwsError
from mappings.iam.outcomes import ALREADY_QUEUED, FAILED, QUEUED, SyncLine
from mappings.iam.selectors import role_label
from mappings.iam.tasks import sync_account, sync_role
from mappings.models import Account, Role

if TYPE_CHECKING:
    from celery import Task

# A queued task not started after this long is presumed lost and may be queued again.
QUEUED_EXPIRY = tasks.QUEUED_EXPIRY
# Expiries closer than this get a sync queued for their moment when the mapping is written;
# later ones are queued by the beat's ``sync_expiries`` shortly before (a task with an ETA waits
# in the worker's memory, and Redis redelivers it after its visibility timeout, one hour).
EXPIRY_HORIZON = timedelta(minutes=30)
# Seconds a queued sync waits, so writes in quick succession land in one sync.
COALESCE_COUNTDOWN = 2
# How long ``sync_request(..., wait=True)`` waits for a worker by default.
WAIT_SECONDS = 600


def broker_configured() -> bool:
    return bool(settings.CELERY_BROKER_URL)


# --- after registry writes -----------------------------------------------------------------------


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
    pending: set[int] = connections[DEFAULT_DB_ALIAS].__dict__.setdefault("rolegate_iam_pending", set())
    return pending


def _enqueue_pending() -> None:
    pending = _pending_ids()
    ids = sorted(pending)
    pending.clear()
    for role_id in ids:
        role_sync_enqueue(role_id=role_id)
    expiry_syncs_enqueue(role_ids=ids)


def expiry_syncs_enqueue(*, role_ids: Iterable[int]) -> int:
    """Queue a sync of each role for the moment each of its enabled mappings expires, within
    :data:`EXPIRY_HORIZON` (Celery ``eta``); returns how many were queued."""
    now = timezone.now()
    moments = selectors.expiries_between(now, now + EXPIRY_HORIZON, role_ids=role_ids)
    for role_id, moment in moments:
        sync_role.apply_async(kwargs={"role_id": role_id}, eta=moment)
    return len(moments)


def role_sync_enqueue(*, role_id: int) -> bool:
    """Queue ``sync_role`` unless one is already queued and not yet started; True if queued."""
    now = timezone.now()
    if not services.role_sync_claim(role_id=role_id, now=now, expiry=QUEUED_EXPIRY):
        return False
    try:
        sync_role.apply_async(kwargs={"role_id": role_id}, countdown=COALESCE_COUNTDOWN)
    except Exception:
        # Not queued after all (broker down): let the next change, or the drift scan, try again.
        Role.objects.filter(pk=role_id, sync_queued_at=now).update(sync_queued_at=None)
        raise
    return True


def schedule_account_sync(*, account_id: int) -> None:
    """After commit, queue the sync of the account's providers, roles and retired roles (with a
    broker; without one, ``sync_iam`` or the admin's action runs it)."""
    if broker_configured():
        transaction.on_commit(lambda: sync_account.delay(account_id=account_id), robust=True)


# --- on request ----------------------------------------------------------------------------------


def sync_request(
    target: Role | Account, *, dry_run: bool = False, wait: bool = False, timeout: int = WAIT_SECONDS
) -> list[SyncLine]:
    """Sync one role (``sync_role``) or one account (``sync_account``: its providers, roles and
    retired roles), the one entry point for people asking for a sync.

    Without a broker the task runs in this process. With one it is handed to a worker: with
    ``wait``, this waits up to ``timeout`` seconds for the result (celery's ``TimeoutError`` when
    no worker answers); without, the report is one line, ``queued`` (or ``already queued``: a role
    keeps at most one sync queued). An AWS failure the task would retry is one ``failed`` line.
    """
    label, task, kwargs = _sync_task(target, dry_run=dry_run)
    try:
        if not broker_configured():
            lines = task.apply(kwargs=kwargs, throw=True).get()
        elif wait:
            lines = task.apply_async(kwargs=kwargs, ignore_result=False).get(timeout=timeout)
        elif isinstance(target, Role) and not dry_run:
            return [SyncLine(label, QUEUED if role_sync_enqueue(role_id=target.pk) else ALREADY_QUEUED)]
        else:
            task.delay(**kwargs)
            return [SyncLine(label, QUEUED)]
    except (AwsError, Retry) as exc:
        return [SyncLine(label, FAILED, f"{getattr(exc, 'exc', None) or exc}")]
    return [SyncLine(**line) for line in lines]


def _sync_task(
    target: Role | Account, *, dry_run: bool
) -> tuple[str, Task[..., list[dict[str, str]]], dict[str, object]]:
    """The label, task and arguments that sync ``target``."""
    if isinstance(target, Role):
        return role_label(target), sync_role, {"role_id": target.pk, "dry_run": dry_run}
    return f"account {target.name}", sync_account, {"account_id": target.pk, "dry_run": dry_run}
