"""Audit retention: the daily task deletes events older than ROLEGATE_AUDIT_RETENTION_DAYS, in batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings

from console.services import audit_events_purge
from console.tasks import audit_retention_task
from exchange.models import AuditEvent
from tests.console.factories import AuditEventFactory

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_purge_deletes_only_events_older_than_the_cutoff_in_batches():
    old = [AuditEventFactory(time=NOW - timedelta(days=30, seconds=i + 1)) for i in range(5)]
    kept = [AuditEventFactory(time=NOW - timedelta(days=30) + timedelta(seconds=1)), AuditEventFactory(time=NOW)]
    assert audit_events_purge(older_than_days=30, batch_size=2, now=NOW) == len(old)
    assert set(AuditEvent.objects.values_list("id", flat=True)) == {e.id for e in kept}


def test_purge_deletes_batch_by_batch(django_assert_max_num_queries):
    for i in range(4):
        AuditEventFactory(time=NOW - timedelta(days=31, seconds=i))
    with django_assert_max_num_queries(20) as ctx:
        audit_events_purge(older_than_days=30, batch_size=2, now=NOW)
    deletes = [q for q in ctx.captured_queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 2


def test_daily_task_uses_the_retention_setting(settings):
    settings.ROLEGATE_AUDIT_RETENTION_DAYS = 7
    AuditEventFactory(time=NOW - timedelta(days=8))
    recent = AuditEventFactory(time=NOW - timedelta(days=6))
    with time_machine.travel(NOW, tick=False):
        assert audit_retention_task.delay().get() == 1
    assert list(AuditEvent.objects.values_list("id", flat=True)) == [recent.id]


def test_retention_task_is_on_the_beat_schedule():
    entry = settings.CELERY_BEAT_SCHEDULE["audit-retention"]
    assert entry["task"] == audit_retention_task.name
    assert entry["schedule"].hour == {3}  # once a day
