"""Expiry on time: IAM stops trusting an expired mapping within 60 s of its ``expires_at``.

A mapping written with an expiry queues a sync for that moment (Celery ``eta``) when the expiry
is near; the beat's ``sync_expiries`` (every minute) queues the farther ones shortly before and
syncs at once any role whose mapping expired after its last sync. Time is frozen with
time_machine; queued tasks are captured (sent) or run in-process (eager)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import override_settings

from mappings import iam_eval, services
from mappings.iam import scheduling, selectors, tasks
from mappings.iam import services as iam_services
from mappings.models import Mapping
from tests.iam.helpers import ROLEGATE, create_iam_role, live_policy, registry

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
pytestmark = pytest.mark.django_db
BROKER = override_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/0")


@pytest.fixture
def sent(monkeypatch):
    """Tasks handed to the broker: (role id, eta)."""
    calls: list[tuple[int, datetime | None]] = []

    def apply_async(kwargs, **options):
        calls.append((kwargs["role_id"], options.get("eta")))

    monkeypatch.setattr(tasks.sync_role, "apply_async", apply_async)
    return calls


def trusted(role_name: str, project: str = "platform/temp") -> bool:
    claims = {
        "project_path": project,
        "ref": "main",
        "ref_type": "branch",
        "ref_protected": "false",
        "pipeline_source": "push",
        "namespace_path": "platform",
    }
    return iam_eval.minted_token_allowed(
        live_policy(role_name),
        rolegate_issuer=ROLEGATE,
        account_id="123456789012",
        audience="sts.amazonaws.com",
        issuer_name="gitlab-com",
        claims=claims,
        mapping_name="m",
        session_tags=True,
        role_name=role_name,
    )


def temporary(issuer, role, expires_at) -> Mapping:
    return services.mapping_create(
        actor="test", name="temp", issuer=issuer, role=role, project="platform/temp", ref="main", expires_at=expires_at
    )


@pytest.mark.django_db(transaction=True)
@BROKER
def test_writing_a_mapping_that_expires_soon_queues_a_sync_for_that_moment(sent):
    with time_machine.travel(T0, tick=False):
        issuer, _, [role] = registry()
        sent.clear()
        temporary(issuer, role, T0 + timedelta(minutes=20))
        assert (role.pk, T0 + timedelta(minutes=20)) in sent
        sent.clear()
        services.registry_update(Mapping.objects.get(name="temp"), actor="test", expires_at=T0 + timedelta(days=30))
        assert all(eta is None for _, eta in sent)  # far away: left to the beat's look-ahead


@pytest.mark.django_db(transaction=True)
def test_the_beat_queues_the_sync_for_the_moment_shortly_before(sent):
    with time_machine.travel(T0, tick=False):
        issuer, _, [role] = registry()
        temporary(issuer, role, T0 + timedelta(days=30))
    with time_machine.travel(T0 + timedelta(days=30) - timedelta(seconds=100), tick=False):
        assert tasks.sync_expiries.apply().get() >= 1
    assert (role.pk, T0 + timedelta(days=30)) in sent


def test_the_eta_sync_takes_the_mapping_out_of_iam_at_its_expiry(moto_aws, settings):
    settings.ROLEGATE_ISSUER = ROLEGATE
    expires = T0 + timedelta(minutes=20)
    with time_machine.travel(T0, tick=False):
        issuer, _, [role] = registry()
        create_iam_role(role.name)
        temporary(issuer, role, expires)
        iam_services.role_sync(role_id=role.pk)
        assert trusted(role.name)
        assert selectors.expiries_between(T0, T0 + scheduling.EXPIRY_HORIZON, role_ids=[role.pk]) == [
            (role.pk, expires)
        ]
    # The task queued with eta=expires runs at that moment (a worker on time; see test_worker.py).
    with time_machine.travel(expires, tick=False):
        tasks.sync_role.apply(kwargs={"role_id": role.pk}).get()
        assert not trusted(role.name)
        assert trusted(role.name, "platform/web")  # the other mapping stays


def test_the_beat_takes_an_expired_mapping_out_when_no_eta_task_ran(moto_aws, settings):
    """The safety net: no ETA task ran (lost, or the beat was down at the look-ahead); the next
    beat run (at most 60 s later) syncs every role whose mapping expired since its last sync,
    and only those."""
    settings.ROLEGATE_ISSUER = ROLEGATE
    expires = T0 + timedelta(minutes=20)
    with time_machine.travel(T0, tick=False):
        issuer, _, roles = registry(roles=("deploy-web", "deploy-api"))
        for role in roles:
            create_iam_role(role.name)
        temporary(issuer, roles[0], expires)
        for role in roles:
            iam_services.role_sync(role_id=role.pk)
        assert selectors.roles_expired_since_sync(T0) == []
    with time_machine.travel(expires + timedelta(seconds=59), tick=False):
        assert selectors.roles_expired_since_sync(expires + timedelta(seconds=59)) == [roles[0].pk]
        assert tasks.sync_expiries.apply().get() == 1  # in-process here: the sync ran
        assert not trusted(roles[0].name)
        assert tasks.sync_expiries.apply().get() == 0  # synced after the expiry: not again


def test_a_disabled_or_unexpiring_mapping_is_not_an_expiry():
    with time_machine.travel(T0, tick=False):
        issuer, _, [role] = registry()
        mapping = temporary(issuer, role, T0 + timedelta(minutes=1))
        services.registry_update(mapping, actor="test", enabled=False)
        assert selectors.expiries_between(T0, T0 + timedelta(hours=1)) == []
    with time_machine.travel(T0 + timedelta(minutes=2), tick=False):
        assert selectors.roles_expired_since_sync(T0 + timedelta(minutes=2)) == []
