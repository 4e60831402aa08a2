"""Revoking live sessions: AWS's revoke-older-sessions inline policy, with moto and the evaluator.

Personas: the web team's main-branch job holds a session issued before the revocation (denied
afterwards) and assumes the role again after it (allowed)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.management import CommandError, call_command

from mappings import iam_eval, services, session_policy
from mappings.iam import aws_iam, revocations
from mappings.iam import services as iam_services
from mappings.iam_eval import Request
from mappings.models import Mapping, Role, SessionRevocation
from tests.iam.helpers import ROLEGATE, CallCounter, create_iam_role, registry

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 11, 26, 12, 0, 0, 250000, tzinfo=UTC)
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
OTHER = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}


def session_may(role_name: str, issued: datetime, action: str = "s3:PutObject") -> bool:
    """The role's inline policies (what moto holds) plus an allow-everything policy, evaluated
    for a session issued at ``issued``."""
    client = aws_iam.iam_client()
    inline = [
        aws_iam.get_role_inline_policy(role_name, name)
        for name in client.list_role_policies(RoleName=role_name)["PolicyNames"]
    ]
    request = Request(action, "", {"aws:TokenIssueTime": issued.strftime("%Y-%m-%dT%H:%M:%SZ")}, "arn:aws:s3:::b/k")
    return iam_eval.session_allows([ALLOW_ALL, *inline], request)


@pytest.fixture
def synced(moto_aws, settings):
    settings.ROLEGATE_ISSUER = ROLEGATE
    with time_machine.travel(T0 - timedelta(hours=1), tick=False):
        issuer, account, [role] = registry()
        create_iam_role(role.name)
        client = aws_iam.iam_client()
        client.put_role_policy(RoleName=role.name, PolicyName="team-owned", PolicyDocument=json.dumps(OTHER))
        client.create_policy(PolicyName="managed", PolicyDocument=json.dumps(OTHER))
        client.attach_role_policy(RoleName=role.name, PolicyArn="arn:aws:iam::123456789012:policy/managed")
        iam_services.role_sync(role_id=role.pk)
    return issuer, account, role


def test_the_evaluator_denies_a_session_issued_before_the_cut_off_and_allows_one_after():
    policy = session_policy.revoke_older_sessions(T0)
    before = Request("s3:PutObject", "", {"aws:TokenIssueTime": "2026-11-26T11:59:59Z"}, "arn:aws:s3:::b/k")
    after = Request("s3:PutObject", "", {"aws:TokenIssueTime": "2026-11-26T12:00:01Z"}, "arn:aws:s3:::b/k")
    assert not iam_eval.session_allows([ALLOW_ALL, policy], before)
    assert iam_eval.session_allows([ALLOW_ALL, policy], after)
    assert iam_eval.session_allows([ALLOW_ALL], before)  # without it, the old session works
    # The cut-off is rounded up to the second: a session of that same second is revoked too.
    same_second = Request("s3:PutObject", "", {"aws:TokenIssueTime": "2026-11-26T12:00:00Z"})
    assert not iam_eval.session_allows([ALLOW_ALL, session_policy.revoke_older_sessions(T0)], same_second)
    assert session_policy.cutoff_of(policy) == datetime(2026, 11, 26, 12, 0, 1, tzinfo=UTC)


def test_revoke_sessions_command_writes_the_inline_policy_and_touches_nothing_else(synced):
    _, _, role = synced
    issued_before = T0 - timedelta(minutes=10)
    assert session_may(role.name, issued_before)
    out = io.StringIO()
    with time_machine.travel(T0, tick=False):
        call_command("revoke_sessions", "prod/deploy-web", "--reason", "incident 42", stdout=out)
    assert out.getvalue().splitlines() == [
        "role prod/deploy-web: updated: revoked sessions issued before 2026-11-26T12:00:01Z",
        "role prod/deploy-web: sessions issued before 2026-11-26T12:00:01Z are denied",
    ]
    assert not session_may(role.name, issued_before)
    assert session_may(role.name, T0 + timedelta(seconds=5))
    client = aws_iam.iam_client()
    assert json.loads(json.dumps(aws_iam.get_role_inline_policy(role.name, "team-owned"))) == OTHER
    assert sorted(client.list_role_policies(RoleName=role.name)["PolicyNames"]) == [
        "RolegateRevokeOlderSessions",
        "team-owned",
    ]
    assert [p["PolicyName"] for p in client.list_attached_role_policies(RoleName=role.name)["AttachedPolicies"]] == [
        "managed"
    ]
    [record] = SessionRevocation.objects.all()
    assert (record.role_label, record.reason, record.cutoff, record.applied_at is not None) == (
        "prod/deploy-web",
        "incident 42",
        T0,
        True,
    )
    assert "(revoke_sessions)" in record.actor

    # Idempotent: the next sync reads the policy and writes nothing.
    counter = CallCounter(client)
    with time_machine.travel(T0 + timedelta(minutes=1), tick=False):
        line = iam_services.role_sync(role_id=role.pk)
    assert line.outcome == "unchanged"
    assert counter.count("PutRolePolicy") == 0 and counter.count("GetRolePolicy") == 1


def test_the_cut_off_only_moves_forward(synced):
    _, _, role = synced
    with time_machine.travel(T0, tick=False):
        call_command("revoke_sessions", "prod/deploy-web", stdout=io.StringIO())
        call_command("revoke_sessions", "prod/deploy-web", "--before", "2026-11-26T11:00:00Z", stdout=io.StringIO())
    role.refresh_from_db()
    assert role.sessions_revoked_before == datetime(2026, 11, 26, 12, 0, 1, tzinfo=UTC)
    assert session_policy.cutoff_of(aws_iam.get_role_inline_policy(role.name, session_policy.POLICY_NAME)) == (
        datetime(2026, 11, 26, 12, 0, 1, tzinfo=UTC)
    )
    assert SessionRevocation.objects.count() == 2  # both recorded


def test_revoke_sessions_refuses_unknown_roles_and_bad_times(synced):
    for args, message in [
        (["prod/nope"], "No role 'prod/nope'"),
        (["prod/deploy-web", "--before", "yesterday"], "not an ISO 8601 time"),
        (["prod/deploy-web", "--before", "2026-11-26T11:00:00"], "needs a time zone"),
        (["prod/deploy-web", "--before", "2999-01-01T00:00:00Z"], "in the future"),
    ]:
        with pytest.raises(CommandError, match=message):
            call_command("revoke_sessions", *args, stdout=io.StringIO())
    assert SessionRevocation.objects.count() == 0


@pytest.mark.parametrize("change", ["delete", "disable"])
def test_removing_a_mapping_on_an_opted_in_account_revokes_sessions_after_the_trust_write(synced, change):
    _, account, role = synced
    services.registry_update(account, actor="test", revoke_sessions_on_removal=True)
    mapping = Mapping.objects.get()
    with time_machine.travel(T0, tick=False):
        if change == "delete":
            services.registry_delete(mapping, actor="alice")
        else:
            services.registry_update(mapping, actor="alice", enabled=False)
        [record] = SessionRevocation.objects.all()
        assert record.cutoff is None and record.applied_at is None  # set by the sync
        assert record.reason == f"mapping deploy-web-main {'deleted' if change == 'delete' else 'disabled'}"
        assert record.actor == "alice"
    with time_machine.travel(T0 + timedelta(seconds=3), tick=False):
        line = iam_services.role_sync(role_id=role.pk)
    assert line.outcome == "updated" and "revoked sessions issued before 2026-11-26T12:00:04Z" in line.reason
    record.refresh_from_db()
    assert record.cutoff == T0 + timedelta(seconds=3) and record.applied_at is not None
    assert not session_may(role.name, T0 + timedelta(seconds=2))


def test_without_the_opt_in_nothing_is_revoked(synced):
    services.registry_delete(Mapping.objects.get(), actor="test")
    assert SessionRevocation.objects.count() == 0
    _, _, role = synced
    assert iam_services.role_sync(role_id=role.pk).reason == ""
    assert aws_iam.get_role_inline_policy(role.name, session_policy.POLICY_NAME) is None


def test_sync_iam_check_shows_a_revocation_not_yet_in_iam(synced):
    _, _, role = synced
    with time_machine.travel(T0, tick=False):
        revocations.session_revoke(role=role, actor="test", reason="r", cutoff=T0)
        out = io.StringIO()
        with pytest.raises(CommandError):
            call_command("sync_iam", "--check", stdout=out)
    assert "role prod/deploy-web: differs: sessions issued before 2026-11-26T12:00:01Z are not revoked in IAM yet" in (
        out.getvalue()
    )


def test_a_failed_revocation_keeps_its_error_and_is_retried(synced):
    _, _, role = synced
    revocations.session_revoke(role=role, actor="test", reason="r", cutoff=T0)
    aws_iam.iam_client().delete_role_policy(RoleName=role.name, PolicyName="team-owned")
    aws_iam.iam_client().detach_role_policy(RoleName=role.name, PolicyArn="arn:aws:iam::123456789012:policy/managed")
    aws_iam.iam_client().delete_role(RoleName=role.name)
    assert iam_services.role_sync(role_id=role.pk).outcome == "failed"
    record = SessionRevocation.objects.get()
    assert record.applied_at is None and "does not exist" in record.last_error
    assert Role.objects.get(pk=role.pk).sessions_revoked_before is None
