"""The sync against moto (and botocore's Stubber where moto lacks a call or we need a failure)."""

from __future__ import annotations

import datetime as dt

import pytest
from botocore.stub import Stubber
from django.test import override_settings

from mappings import policies, services
from mappings.iam import aws_iam, scheduling, selectors, tasks
from mappings.iam import services as iam_services
from mappings.iam.outcomes import SyncLine
from mappings.models import Account, Mapping, Role
from tests.iam.helpers import PLACEHOLDER, ROLEGATE, CallCounter, create_iam_role, live_policy, registry

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("rolegate_issuer")]


@pytest.fixture
def rolegate_issuer(settings):
    settings.ROLEGATE_ISSUER = ROLEGATE


def test_account_sync_creates_the_provider_once_and_writes_the_policy(moto_aws):
    _, account, [role] = registry()
    create_iam_role("deploy-web")
    lines = tasks.sync_account.apply(kwargs={"account_id": account.pk}).get()
    assert [(line["label"], line["outcome"]) for line in lines] == [
        ("provider prod/rolegate.example.com", "created"),
        ("role prod/deploy-web", "updated"),
    ]
    arn = policies.provider_arn(account.account_id, ROLEGATE)
    provider = aws_iam.iam_client().get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    assert provider["ClientIDList"] == ["sts.amazonaws.com"]
    desired = selectors.role_desired_policy(role)
    assert policies.same_policy(live_policy("deploy-web"), desired.document)
    role.refresh_from_db()
    assert role.sync_status == Role.SyncStatus.IN_SYNC and role.synced_at and not role.drift
    assert role.live_policy_sha256 == desired.sha256 == role.desired_policy_sha256
    account.refresh_from_db()
    assert account.provider_status == Account.SyncStatus.IN_SYNC

    again = tasks.sync_account.apply(kwargs={"account_id": account.pk}).get()
    assert [line["outcome"] for line in again] == ["unchanged", "unchanged"]


def test_missing_client_id_is_added(aws_env):
    client = aws_iam.iam_client()
    arn = policies.provider_arn("123456789012", ROLEGATE)
    with Stubber(client) as stub:
        stub.add_response(
            "get_open_id_connect_provider",
            {"Url": "rolegate.example.com", "ClientIDList": ["other-audience"], "ThumbprintList": []},
            {"OpenIDConnectProviderArn": arn},
        )
        stub.add_response(
            "add_client_id_to_open_id_connect_provider",
            {},
            {"OpenIDConnectProviderArn": arn, "ClientID": "sts.amazonaws.com"},
        )
        outcome = aws_iam.ensure_oidc_provider(
            account_id="123456789012", url=ROLEGATE, client_ids=["sts.amazonaws.com"]
        )
        stub.assert_no_pending_responses()
    assert outcome == "updated"


def test_a_provider_created_concurrently_is_not_a_failure(aws_env):
    client = aws_iam.iam_client()
    arn = policies.provider_arn("123456789012", ROLEGATE)
    with Stubber(client) as stub:
        stub.add_client_error("get_open_id_connect_provider", "NoSuchEntity", "none", 404)
        stub.add_client_error("create_open_id_connect_provider", "EntityAlreadyExists", "exists", 409)
        stub.add_response(
            "get_open_id_connect_provider",
            {"Url": "rolegate.example.com", "ClientIDList": ["sts.amazonaws.com"], "ThumbprintList": []},
            {"OpenIDConnectProviderArn": arn},
        )
        outcome = aws_iam.ensure_oidc_provider(
            account_id="123456789012", url=ROLEGATE, client_ids=["sts.amazonaws.com"]
        )
        stub.assert_no_pending_responses()
    assert outcome == "unchanged"


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("Throttling", 400, aws_iam.AwsTransientError),
        ("ServiceFailure", 500, aws_iam.AwsTransientError),
        ("SomethingNew", 503, aws_iam.AwsTransientError),
        ("AccessDenied", 403, aws_iam.AwsPermanentError),
        ("NoSuchEntity", 404, aws_iam.AwsPermanentError),
        ("MalformedPolicyDocument", 400, aws_iam.AwsPermanentError),
        ("LimitExceeded", 409, aws_iam.AwsPermanentError),
    ],
)
def test_error_classification(code, status, kind):
    from botocore.exceptions import ClientError

    error = ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")
    classified = aws_iam.classify(error)
    assert type(classified) is kind and classified.code == code


def test_connection_failures_are_transient():
    from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

    for exc in (
        EndpointConnectionError(endpoint_url="http://x"),
        ConnectTimeoutError(endpoint_url="http://x"),
        ReadTimeoutError(endpoint_url="http://x"),
    ):
        assert isinstance(aws_iam.classify(exc), aws_iam.AwsTransientError)


def test_policy_is_written_only_when_it_changes(moto_aws):
    _, _, [role] = registry()
    create_iam_role("deploy-web")
    counter = CallCounter(aws_iam.iam_client())
    assert tasks.sync_role.apply(kwargs={"role_id": role.pk}).get()[0]["outcome"] == "updated"
    assert tasks.sync_role.apply(kwargs={"role_id": role.pk}).get()[0]["outcome"] == "unchanged"
    assert counter.count("UpdateAssumeRolePolicy") == 1

    services.registry_update(role.mappings.get(), actor="test", ref="release/*")
    assert tasks.sync_role.apply(kwargs={"role_id": role.pk}).get()[0]["outcome"] == "updated"
    assert "release/*" in str(live_policy("deploy-web"))
    assert counter.count("UpdateAssumeRolePolicy") == 2


def test_hand_edit_is_detected_and_repaired(moto_aws):
    _, _, [role] = registry()
    create_iam_role("deploy-web")
    iam_services.role_sync(role_id=role.pk)
    aws_iam.iam_client().update_assume_role_policy(RoleName="deploy-web", PolicyDocument=policies.minify(PLACEHOLDER))

    check = iam_services.role_sync(role_id=role.pk, dry_run=True)
    assert check.outcome == "differs" and "ec2.amazonaws.com" in check.diff
    role.refresh_from_db()
    assert not role.drift  # --check changes nothing

    line = iam_services.role_sync(role_id=role.pk)
    assert (line.outcome, line.reason) == ("updated", "drift repaired")
    role.refresh_from_db()
    assert role.drift and role.sync_status == Role.SyncStatus.IN_SYNC
    assert policies.same_policy(live_policy("deploy-web"), selectors.role_desired_policy(role).document)


@pytest.fixture
def eager_retries():
    """Let Celery run retries in-process (eager propagation would raise the Retry instead)."""
    conf = tasks.sync_role.app.conf
    previous = conf.task_eager_propagates
    conf.task_eager_propagates = False
    yield
    conf.task_eager_propagates = previous


def provider_in_sync(account) -> None:
    """Mark the account's provider synced, so a role sync goes straight to the role."""
    Account.objects.filter(pk=account.pk).update(
        provider_status=Account.SyncStatus.IN_SYNC, provider_synced_at=account.updated_at + dt.timedelta(seconds=1)
    )


def test_throttling_is_retried(aws_env, db, eager_retries):
    _, account, [role] = registry()
    provider_in_sync(account)
    desired = selectors.role_desired_policy(role)
    role_shape = {
        "Path": "/",
        "RoleName": "deploy-web",
        "RoleId": "AROAEXAMPLEEXAMPLE123",
        "Arn": role.arn,
        "CreateDate": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "AssumeRolePolicyDocument": desired.text,
    }
    with Stubber(aws_iam.iam_client()) as stub:
        stub.add_client_error("get_role", "Throttling", "Rate exceeded", 400)
        stub.add_client_error("get_role", "ServiceUnavailable", "try later", 503)
        stub.add_response("get_role", {"Role": role_shape}, {"RoleName": "deploy-web"})
        lines = tasks.sync_role.apply(kwargs={"role_id": role.pk}).get()
        stub.assert_no_pending_responses()
    assert lines[0]["outcome"] == "unchanged"
    role.refresh_from_db()
    assert role.sync_status == Role.SyncStatus.IN_SYNC and role.last_error == ""


def test_transient_failure_is_recorded_and_raised_for_the_retry(aws_env, db):
    _, account, [role] = registry()
    provider_in_sync(account)
    with Stubber(aws_iam.iam_client()) as stub:
        stub.add_client_error("get_role", "Throttling", "Rate exceeded", 400)
        with pytest.raises(aws_iam.AwsTransientError):
            iam_services.role_sync(role_id=role.pk)
    role.refresh_from_db()
    assert "Throttling" in role.last_error and "will retry" in role.last_error


@pytest.mark.parametrize(
    ("code", "status"),
    [("AccessDenied", 403), ("MalformedPolicyDocument", 400), ("LimitExceeded", 409)],
)
def test_permanent_errors_are_recorded_not_retried(aws_env, db, code, status):
    _, account, [role] = registry()
    provider_in_sync(account)
    with Stubber(aws_iam.iam_client()) as stub:
        stub.add_client_error("get_role", code, "no", status)  # one response: a retry would fail the stub
        lines = tasks.sync_role.apply(kwargs={"role_id": role.pk}).get()
    assert lines[0]["outcome"] == "failed" and code in lines[0]["reason"]
    role.refresh_from_db()
    assert role.sync_status == Role.SyncStatus.FAILED and code in role.last_error


def test_missing_iam_role_is_a_recorded_failure(moto_aws):
    _, _, [role] = registry()
    line = iam_services.role_sync(role_id=role.pk)
    assert line.outcome == "failed" and "does not exist" in line.reason
    role.refresh_from_db()
    assert role.sync_status == Role.SyncStatus.FAILED


def test_deleted_role_is_a_clean_exit(db):
    assert tasks.sync_role.apply(kwargs={"role_id": 987654}).get() == []
    assert tasks.sync_account.apply(kwargs={"account_id": 987654}).get() == []


def test_manager_role_is_assumed_for_its_account(moto_aws):
    manager = "arn:aws:iam::111122223333:role/rolegate-manager"
    _, account, _ = registry(account_id="111122223333", manager_role_arn=manager)
    create_iam_role("deploy-web", manager_role_arn=manager)
    create_iam_role("deploy-web")  # same name in the worker's own account: must stay untouched
    lines = tasks.sync_account.apply(kwargs={"account_id": account.pk}).get()
    assert [line["outcome"] for line in lines] == ["created", "updated"]
    assert "111122223333:oidc-provider" in str(live_policy("deploy-web", manager_role_arn=manager))
    assert live_policy("deploy-web") == PLACEHOLDER
    provider = aws_iam.iam_client(manager).list_open_id_connect_providers()["OpenIDConnectProviderList"]
    assert [p["Arn"] for p in provider] == ["arn:aws:iam::111122223333:oidc-provider/rolegate.example.com"]
    assert aws_iam.iam_client().list_open_id_connect_providers()["OpenIDConnectProviderList"] == []


def test_policy_too_large_is_failed_and_never_written(moto_aws):
    """The full policy is never written; the shrink-only one is (here: the placeholder's EC2
    trust is not desired, and none of the mappings was live, so it trusts nobody)."""
    issuer, _, [role] = registry()
    # Written behind the services' back: they refuse a change that leaves a policy over its quota.
    for i in range(60):
        Mapping.objects.create(name=f"m{i:02d}", issuer=issuer, role=role, project=f"group-{i}/service-with-long-name")
    create_iam_role("deploy-web")
    counter = CallCounter(aws_iam.iam_client())
    line = iam_services.role_sync(role_id=role.pk)
    assert line.outcome == "failed" and "over the account's quota of 2048" in line.reason
    assert line.reason.startswith("shrink-only: wrote the live trust minus what is no longer desired (missing ")
    assert counter.count("UpdateAssumeRolePolicy") == 1
    assert live_policy("deploy-web") == policies.trusts_nobody()
    role.refresh_from_db()
    assert role.sync_status == Role.SyncStatus.SHRINK_ONLY and role.policy_size > 2048
    assert len(role.missing_mappings) == 61


def test_direct_mode_account_ensures_the_gitlab_provider(moto_aws):
    _, account, [role] = registry(mode="direct")
    services.registry_update(role.mappings.get(), actor="test", protected=True)
    create_iam_role("deploy-web")
    lines = tasks.sync_account.apply(kwargs={"account_id": account.pk}).get()
    assert [(line["label"], line["outcome"]) for line in lines] == [
        ("provider prod/gitlab.com", "created"),
        ("role prod/deploy-web", "updated"),
    ]
    assert "gitlab.com:sub" in str(live_policy("deploy-web"))
    role.refresh_from_db()
    assert any("'protected' is not enforced" in w for w in role.sync_warnings)


# --- scheduling ----------------------------------------------------------------------------------


@pytest.fixture
def sent(monkeypatch):
    calls: list[dict] = []
    monkeypatch.setattr(tasks.sync_role, "apply_async", lambda kwargs, **options: calls.append(kwargs))
    return calls


@pytest.mark.django_db(transaction=True)
def test_without_a_broker_changes_only_mark_roles_pending(sent):
    _, _, [role] = registry()
    assert sent == []
    role.refresh_from_db()
    assert role.sync_status == Role.SyncStatus.PENDING


@pytest.mark.django_db(transaction=True)
@override_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/0")
def test_a_burst_of_changes_queues_one_sync_per_role(sent, django_capture_on_commit_callbacks):
    from django.db import transaction

    with transaction.atomic():
        _, _, roles = registry(roles=("a", "b"))
        issuer = roles[0].mappings.get().issuer
        for i in range(20):
            services.mapping_create(actor="test", name=f"burst-{i}", issuer=issuer, role=roles[0], project=f"p/{i}")
    assert sorted(call["role_id"] for call in sent) == sorted(r.pk for r in roles)

    # Still queued (not started): further commits send nothing more.
    services.mapping_create(actor="test", name="later", issuer=issuer, role=roles[0], project="p/later")
    assert len(sent) == 2
    # Once the task has started (it clears the flag), the next change queues again.
    Role.objects.filter(pk=roles[0].pk).update(sync_queued_at=None)
    services.mapping_create(actor="test", name="later-2", issuer=issuer, role=roles[0], project="p/later-2")
    assert [call["role_id"] for call in sent[2:]] == [roles[0].pk]


@pytest.mark.django_db(transaction=True)
@override_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/0")
def test_a_rolled_back_change_does_not_stop_the_next_one_from_queueing(sent):
    from django.db import transaction

    _, _, [role] = registry()
    sent.clear()
    Role.objects.filter(pk=role.pk).update(sync_queued_at=None)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.registry_update(role, actor="test", max_session_seconds=1800)
        raise RuntimeError("rolled back")
    assert sent == []
    services.registry_update(role, actor="test", max_session_seconds=7200)
    assert [call["role_id"] for call in sent] == [role.pk]


def test_a_role_sync_ensures_a_stale_provider_first(moto_aws):
    _, account, [role] = registry()
    create_iam_role("deploy-web")
    assert iam_services.role_sync(role_id=role.pk).outcome == "updated"  # the provider did not exist yet
    account.refresh_from_db()
    assert account.provider_status == Account.SyncStatus.IN_SYNC
    arn = policies.provider_arn(account.account_id, ROLEGATE)
    assert aws_iam.get_oidc_provider_client_ids(arn) == ["sts.amazonaws.com"]

    counter = CallCounter(aws_iam.iam_client())
    services.registry_update(role.mappings.get(), actor="test", ref="v*")
    iam_services.role_sync(role_id=role.pk)
    assert "GetOpenIDConnectProvider" not in counter.calls  # provider in sync: not read again

    account.refresh_from_db()
    assert not selectors.provider_stale(account)
    services.registry_update(account, actor="test", audience="rolegate")
    assert selectors.provider_stale(account)  # the next role sync adds the client id (Stubber test above)


def test_drift_scan_syncs_every_account(moto_aws):
    _, _, [role] = registry()
    create_iam_role("deploy-web")
    assert tasks.scan_drift.apply().get() == 1
    role.refresh_from_db()
    assert role.sync_status == Role.SyncStatus.IN_SYNC


@pytest.mark.django_db(transaction=True)
def test_one_sync_per_role_at_a_time_on_postgresql(moto_aws):
    """While a sync talks to IAM it holds the role's advisory lock; another session cannot take it."""
    import psycopg
    from django.db import connection

    from tests.services import require_postgresql

    require_postgresql()
    db = connection.settings_dict
    _, _, [role] = registry()
    create_iam_role("deploy-web")
    seen: list[bool] = []
    other = psycopg.connect(
        dbname=db["NAME"],
        user=db["USER"],
        password=db["PASSWORD"] or None,
        host=db["HOST"],
        port=db["PORT"] or None,
        autocommit=True,
    )

    def try_lock(**kwargs):
        got = other.execute("SELECT pg_try_advisory_lock(%s)", [iam_services.role_lock_key(role.pk)]).fetchone()[0]
        if got:
            other.execute("SELECT pg_advisory_unlock(%s)", [iam_services.role_lock_key(role.pk)])
        seen.append(got)

    aws_iam.iam_client().meta.events.register("before-call.iam.GetRole", try_lock)
    try:
        iam_services.role_sync(role_id=role.pk)
        try_lock()
    finally:
        other.close()
    assert seen == [False, True]  # held during the IAM call, released when the sync committed
    role.refresh_from_db()
    assert role.sync_status == Role.SyncStatus.IN_SYNC


@pytest.mark.django_db(transaction=True)
@override_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/0")
def test_a_failed_send_does_not_leave_the_role_marked_queued(monkeypatch):
    _, _, [role] = registry()
    Role.objects.filter(pk=role.pk).update(sync_queued_at=None)

    def broker_down(**kwargs):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(tasks.sync_role, "apply_async", broker_down)
    with pytest.raises(ConnectionRefusedError):
        scheduling.role_sync_enqueue(role_id=role.pk)
    role.refresh_from_db()
    assert role.sync_queued_at is None


# --- sync requests (the admin's "Sync IAM now", sync_iam) -------------------------------------------


@pytest.mark.django_db(transaction=True)
@override_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/0")
def test_with_a_broker_a_requested_role_sync_is_queued_once(sent):
    _, _, [role] = registry()
    Role.objects.filter(pk=role.pk).update(sync_queued_at=None)  # the registry's own writes queued one
    sent.clear()
    assert scheduling.sync_request(role) == [SyncLine("role prod/deploy-web", "queued")]
    assert scheduling.sync_request(role) == [SyncLine("role prod/deploy-web", "already queued")]
    assert sent == [{"role_id": role.pk}]


@override_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/0")
def test_with_a_broker_a_requested_account_sync_is_queued_or_awaited(monkeypatch):
    _, account, _ = registry()
    delayed: list[dict] = []
    monkeypatch.setattr(tasks.sync_account, "delay", lambda **kwargs: delayed.append(kwargs))
    assert scheduling.sync_request(account) == [SyncLine("account prod", "queued")]
    assert delayed == [{"account_id": account.pk, "dry_run": False}]

    class Result:
        def get(self, *, timeout):
            assert timeout == 42
            return [SyncLine("role prod/deploy-web", "differs", diff="-x\n+y\n").as_dict()]

    sent: list[dict] = []
    monkeypatch.setattr(
        tasks.sync_account, "apply_async", lambda *, kwargs, ignore_result: sent.append(kwargs) or Result()
    )
    lines = scheduling.sync_request(account, dry_run=True, wait=True, timeout=42)
    assert lines == [SyncLine("role prod/deploy-web", "differs", diff="-x\n+y\n")]
    assert sent == [{"account_id": account.pk, "dry_run": True}]


def test_without_a_broker_a_requested_sync_runs_here_and_reports_a_failure_as_a_line(moto_aws, monkeypatch):
    _, account, [role] = registry()
    create_iam_role("deploy-web")
    assert scheduling.sync_request(role) == [SyncLine("role prod/deploy-web", "updated")]

    def throttled(**kwargs):
        raise aws_iam.AwsTransientError("Throttling", "Rate exceeded")

    monkeypatch.setattr(aws_iam, "ensure_oidc_provider", throttled)
    assert scheduling.sync_request(account) == [SyncLine("account prod", "failed", "Throttling: Rate exceeded")]


def test_the_tasks_keep_their_names_for_queued_messages_and_the_beat_schedule():
    """Workers discover the IAM sync's tasks under the names messages and the schedule use."""
    from django.conf import settings

    from portal.celery import app

    app.loader.import_default_modules()
    names = {"mappings.tasks.sync_role", "mappings.tasks.sync_account"}
    names |= {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert names <= set(app.tasks)
    assert tasks.sync_role.name == "mappings.tasks.sync_role"
    assert tasks.sync_account.name == "mappings.tasks.sync_account"


def test_a_role_whose_last_mapping_goes_is_written_a_policy_that_trusts_nobody(moto_aws):
    """IAM (and moto) refuse a trust policy with actions other than STS assume actions."""
    _, _, [role] = registry()
    create_iam_role("deploy-web")
    assert tasks.sync_role.apply(kwargs={"role_id": role.pk}).get()[0]["outcome"] == "updated"

    services.registry_update(role.mappings.get(), actor="test", enabled=False)
    [line] = tasks.sync_role.apply(kwargs={"role_id": role.pk}).get()
    assert line["outcome"] == "updated", line
    assert live_policy("deploy-web") == policies.trusts_nobody()
    role.refresh_from_db()
    assert role.sync_status == Role.SyncStatus.IN_SYNC
