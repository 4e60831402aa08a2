"""Periodic work of the console."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from console.services import audit_events_purge


@shared_task(name="console.audit_retention")
def audit_retention_task() -> int:
    """Daily (CELERY_BEAT_SCHEDULE): audit events are kept ROLEGATE_AUDIT_RETENTION_DAYS days, then
    deleted in batches so the table stays bounded without one long-running delete."""
    return audit_events_purge(older_than_days=settings.ROLEGATE_AUDIT_RETENTION_DAYS)
