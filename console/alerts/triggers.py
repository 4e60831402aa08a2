"""Evaluate alerts right after each IAM sync task, wherever it ran (a worker, or in-process
without a broker), so a failed sync is announced at once rather than at the next periodic
evaluation. A Celery signal, not an edit of the sync: the sync (``mappings``) may not know the
console exists."""

from __future__ import annotations

from celery import signals
from django.conf import settings

SYNC_TASKS = frozenset({"mappings.tasks.sync_role", "mappings.tasks.sync_account"})


@signals.task_postrun.connect(weak=False)
def _evaluate_after_sync(task=None, state=None, **kwargs) -> None:
    if task is None or task.name not in SYNC_TASKS or state == "RETRY":
        return
    from console.alerts.tasks import alerts_evaluate_task

    if settings.CELERY_BROKER_URL:
        alerts_evaluate_task.delay()
    else:  # in-process, like the sync itself (an eager delay() would look for a broker)
        alerts_evaluate_task.apply()
