"""Alerts (docs/operations.md "Alerts"): one message when a problem starts, one when it clears,
nothing in between; delivered by Celery to real HTTP receivers, retried on transient errors only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from console.alerts import services
from console.alerts.models import AlertWebhook, Problem
from console.alerts.tasks import alert_deliver_task, alerts_evaluate_task
from console.alerts.webhooks import WebhookTransientError
from exchange import jwks_status, keys
from exchange.models import SigningKey
from mappings.iam import tasks
from mappings.models import Role
from tests.factories import AccountFactory, IssuerFactory, RoleFactory
from tests.iam.helpers import ROLEGATE, create_iam_role, registry

pytestmark = pytest.mark.django_db


def test_a_failed_sync_sends_one_alert_and_one_cleared_after_the_fix(moto_aws, settings, receiver):
    """The issue's done-when: a sync IAM refuses (the role does not exist) is announced once to
    each webhook as it happens; syncing it again after the fix announces it cleared, once."""
    settings.ROLEGATE_ISSUER = ROLEGATE
    slack = type(receiver)()  # a second, Slack-compatible receiver configured in the admin
    try:
        settings.ROLEGATE_ALERT_WEBHOOKS = [("json", receiver.url)]
        AlertWebhook.objects.create(name="platform-slack", url=slack.url, kind=AlertWebhook.Kind.SLACK)
        _, _, [role] = registry()

        tasks.sync_role.apply(kwargs={"role_id": role.pk}).get()  # no such role in IAM: failed

        role.refresh_from_db()
        assert role.sync_status == Role.SyncStatus.FAILED
        assert len(receiver.bodies) == 1
        opened = receiver.bodies[0]
        assert opened["event"] == "opened"
        assert opened["key"] == f"role-sync-failed:{role.pk}"
        assert opened["kind"] == "role_sync_failed" and opened["subject"] == "prod/deploy-web"
        assert "deploy-web does not exist" in opened["summary"] and opened["cleared_at"] is None
        assert slack.bodies == [{"text": f":rotating_light: Rolegate: {opened['summary']}"}]

        # Nothing changed: the periodic evaluation and another failed sync send nothing.
        assert alerts_evaluate_task.apply().get() == 0
        tasks.sync_role.apply(kwargs={"role_id": role.pk}).get()
        assert len(receiver.bodies) == 1 and len(slack.bodies) == 1

        create_iam_role("deploy-web")  # the fix
        tasks.sync_role.apply(kwargs={"role_id": role.pk}).get()

        role.refresh_from_db()
        assert role.sync_status == Role.SyncStatus.IN_SYNC
        assert [body["event"] for body in receiver.bodies] == ["opened", "cleared"]
        cleared = receiver.bodies[1]
        assert cleared["key"] == opened["key"] and cleared["cleared_at"]
        assert slack.bodies[1] == {"text": f":white_check_mark: Rolegate: resolved: {opened['summary']}"}
        assert alerts_evaluate_task.apply().get() == 0
        assert len(receiver.bodies) == 2 and len(slack.bodies) == 2
        assert Problem.objects.get().cleared_at is not None
    finally:
        slack.stop()


def test_transient_receiver_errors_are_retried_and_refusals_are_not(settings, receiver):
    settings.ROLEGATE_ALERT_WEBHOOKS = [("json", receiver.url)]
    account = AccountFactory(trust_policy_limit=2048)
    RoleFactory(account=account, name="near", policy_size=2000)

    receiver.statuses = [503, 429]  # then 200
    assert alerts_evaluate_task.apply().get() == 1
    assert [body["kind"] for body in receiver.bodies] == ["policy_near_quota"]
    assert receiver.statuses == []

    Role.objects.filter(name="near").update(policy_size=1000)
    receiver.statuses = [400, 503]  # a refusal is final: the 503 is never asked for
    assert alerts_evaluate_task.apply().get() == 1
    assert len(receiver.bodies) == 1 and receiver.statuses == [503]


def test_an_unreachable_receiver_is_given_up_after_the_retries(settings, receiver, caplog):
    """In a worker, Celery retries transient failures with backoff and jitter (the task's options);
    without a broker the evaluation tries a few times at once, then logs and goes on."""
    assert alert_deliver_task.autoretry_for == (WebhookTransientError,)
    assert alert_deliver_task.retry_jitter and alert_deliver_task.retry_backoff and alert_deliver_task.max_retries
    receiver.stop()
    settings.ROLEGATE_ALERT_WEBHOOKS = [("json", receiver.url)]
    RoleFactory(account=AccountFactory(trust_policy_limit=2048), policy_size=2048)
    assert alerts_evaluate_task.apply().get() == 1
    assert "not delivered to env:0: ConnectionError" in caplog.text
    assert Problem.objects.filter(cleared_at__isnull=True).count() == 1  # opened all the same


def test_a_deleted_webhook_or_problem_drops_the_delivery(settings, receiver):
    problem = Problem.objects.create(
        key="k", kind="role_sync_failed", subject="s", summary="x", opened_at=timezone.now()
    )
    assert services.alert_deliver(problem_id=problem.pk, event="opened", destination="db:999") is False
    assert services.alert_deliver(problem_id=problem.pk + 1, event="opened", destination="env:0") is False
    assert receiver.bodies == []


@pytest.mark.parametrize("ratio", [0.9, 0.91])
def test_a_policy_above_ninety_percent_of_its_quota_is_a_problem(ratio):
    RoleFactory(account=AccountFactory(trust_policy_limit=4000), policy_size=int(4000 * ratio))
    services.alerts_evaluate()
    kinds = [p.kind for p in Problem.objects.all()]
    assert kinds == ([] if ratio == 0.9 else ["policy_near_quota"])


def test_drift_repaired_is_announced_and_clears_with_the_next_clean_sync():
    role = RoleFactory(sync_status=Role.SyncStatus.IN_SYNC, drift=True)
    services.alerts_evaluate()
    assert Problem.objects.get().kind == "drift_repaired"
    Role.objects.filter(pk=role.pk).update(drift=False)
    assert [event for _, event in services.alerts_evaluate()] == ["cleared"]


def test_an_issuer_whose_jwks_cannot_be_fetched_is_a_problem_until_a_fetch_succeeds():
    IssuerFactory(name="gitlab-com")
    jwks_status.jwks_fetch_recorded(
        issuer="gitlab-com", error="https://gitlab.com/oauth/discovery/keys answered HTTP 502"
    )
    jwks_status.jwks_fetch_recorded(issuer="unregistered", error="ignored")
    changes = services.alerts_evaluate()
    problem = Problem.objects.get()
    assert changes == [(problem.pk, "opened")]
    assert problem.key == "jwks-unreachable:gitlab-com" and "HTTP 502" in problem.summary
    jwks_status.jwks_fetch_recorded(issuer="gitlab-com", error="still down")
    assert services.alerts_evaluate() == []
    jwks_status.jwks_fetch_recorded(issuer="gitlab-com", error=None)
    assert services.alerts_evaluate() == [(problem.pk, "cleared")]


def test_a_signing_key_that_no_longer_decrypts_is_a_problem(settings):
    keys.signing_key_create(state=SigningKey.State.CURRENT, now=timezone.now(), activates_at=timezone.now())
    assert services.alerts_evaluate() == []
    settings.SECRET_KEY = "another-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
    services.alerts_evaluate()
    problem = Problem.objects.get()
    assert problem.kind == "signing_key_unusable" and "DJANGO_SECRET_KEY_FALLBACKS" in problem.summary


def test_webhooks_from_the_environment(monkeypatch):
    from portal.settings import _alert_webhooks

    monkeypatch.setenv("X_HOOKS", " slack:https://hooks.slack.com/services/T/B/c , json:http://10.0.0.5:8080/a ")
    assert _alert_webhooks("X_HOOKS") == [
        ("slack", "https://hooks.slack.com/services/T/B/c"),
        ("json", "http://10.0.0.5:8080/a"),
    ]
    monkeypatch.setenv("X_HOOKS", "teams:https://secret.example/hook")
    with pytest.raises(ImproperlyConfigured) as raised:
        _alert_webhooks("X_HOOKS")
    assert "secret.example" not in str(raised.value)


def test_a_shrink_only_role_is_a_problem_naming_what_is_missing_and_why():
    role = RoleFactory(
        sync_status=Role.SyncStatus.SHRINK_ONLY, missing_mappings=["n00", "n01"], last_error="over the quota"
    )
    services.alerts_evaluate()
    problem = Problem.objects.get()
    assert problem.kind == "role_shrink_only"
    assert "missing n00, n01" in problem.summary and problem.summary.endswith(": over the quota")
    Role.objects.filter(pk=role.pk).update(sync_status=Role.SyncStatus.IN_SYNC, missing_mappings=[], last_error="")
    assert [event for _, event in services.alerts_evaluate()] == ["cleared"]


def test_a_revocation_iam_received_is_announced_once_and_cleared_later():
    import time_machine

    from mappings.models import SessionRevocation

    role = RoleFactory()
    cutoff = timezone.now()
    SessionRevocation.objects.create(
        role=role, role_label="prod/deploy-web", cutoff=cutoff, actor="alice", reason="incident 42", applied_at=cutoff
    )
    SessionRevocation.objects.create(role=role, role_label="prod/deploy-web", actor="bob", reason="not applied yet")
    assert [event for _, event in services.alerts_evaluate()] == ["opened"]
    problem = Problem.objects.get()
    assert problem.kind == "revocation_performed"
    assert "prod/deploy-web" in problem.summary and "alice: incident 42" in problem.summary
    assert services.alerts_evaluate() == []  # announced once
    with time_machine.travel(cutoff + timedelta(minutes=16)):
        assert [event for _, event in services.alerts_evaluate()] == ["cleared"]


def test_identity_changed_refusals_are_a_problem_until_they_stop():
    """A pinned path whose jobs are refused (docs/trust-model.md#identity-pins) is announced once
    per issuer and path, naming how many were refused, and clears 15 minutes after the last."""
    import time_machine

    from tests.console.factories import denied

    now = timezone.now()
    for _ in range(2):
        denied(time=now, reason="identity_changed", project_id="99", detail="pinned to project_id 20")
    denied(time=now, reason="no_matching_mapping")  # another refusal: not this problem
    denied(time=now - timedelta(minutes=20), reason="identity_changed", project_path="old/path")  # too old
    assert [event for _, event in services.alerts_evaluate()] == ["opened"]
    problem = Problem.objects.get()
    assert (problem.kind, problem.key, problem.subject) == (
        "identity_changed",
        "identity-changed:gitlab-example:platform/web",
        "gitlab-example platform/web",
    )
    assert "refused 2 job(s) of project platform/web (issuer gitlab-example)" in problem.summary
    assert "accept_identity_change" in problem.summary
    assert services.alerts_evaluate() == []  # announced once
    with time_machine.travel(now + timedelta(minutes=16)):
        assert [event for _, event in services.alerts_evaluate()] == ["cleared"]
