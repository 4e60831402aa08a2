"""Shrink-only sync with moto and the evaluator: a removal whose new policy cannot be written
still leaves IAM without the removed trust; the role says so, and the next sync retries."""

from __future__ import annotations

import io
import json

import botocore.exceptions
import pytest
from django.core.management import CommandError, call_command

from mappings import iam_eval, policies, services
from mappings.iam import aws_iam, selectors
from mappings.iam import services as iam_services
from mappings.models import Mapping, Role
from tests.iam.helpers import ROLEGATE, create_iam_role, live_policy, registry

pytestmark = pytest.mark.django_db


def claims(project: str) -> dict:
    return {
        "project_path": project,
        "ref": "main",
        "ref_type": "branch",
        "ref_protected": "false",
        "pipeline_source": "push",
        "namespace_path": project.split("/")[0],
    }


def iam_lets_in(role_name: str, project: str) -> bool:
    return iam_eval.minted_token_allowed(
        live_policy(role_name),
        rolegate_issuer=ROLEGATE,
        account_id="123456789012",
        audience="sts.amazonaws.com",
        issuer_name="gitlab-com",
        claims=claims(project),
        mapping_name="m",
        session_tags=True,
        role_name=role_name,
    )


@pytest.fixture
def synced(moto_aws, settings):
    """deploy-web trusts platform/web (from the helper), platform/api and legacy/app, in IAM."""
    settings.ROLEGATE_ISSUER = ROLEGATE
    issuer, _, [role] = registry()
    for name, project in [("api", "platform/api"), ("legacy", "legacy/app")]:
        services.mapping_create(actor="test", name=name, issuer=issuer, role=role, project=project, ref="main")
    create_iam_role(role.name)
    assert iam_services.role_sync(role_id=role.pk).outcome == "updated"
    assert iam_lets_in(role.name, "legacy/app")
    return issuer, role


def add_many(issuer, role, count=45):
    """Mappings enough to pass the quota, written behind the services' back: they refuse a write
    that leaves a policy over its recorded quota, so over-quota policies come from elsewhere (a
    registry older than that check, a quota lowered in IAM)."""
    for i in range(count):
        Mapping.objects.create(
            name=f"n{i:02d}", issuer=issuer, role=role, project=f"team-{i:02d}/service-with-a-long-name"
        )


def test_a_removal_whose_new_policy_is_too_large_leaves_iam_without_the_removed_trust(synced):
    issuer, role = synced
    services.registry_delete(Mapping.objects.get(name="legacy"), actor="test")
    add_many(issuer, role)

    line = iam_services.role_sync(role_id=role.pk)
    assert line.outcome == "failed"
    assert line.reason.startswith("shrink-only: wrote the live trust minus what is no longer desired (missing n00,")
    assert "over the account's quota of 2048" in line.reason
    assert not iam_lets_in(role.name, "legacy/app")  # the removal reached IAM
    assert iam_lets_in(role.name, "platform/web") and iam_lets_in(role.name, "platform/api")
    assert not iam_lets_in(role.name, "team-00/service-with-a-long-name")  # nothing added
    role.refresh_from_db()
    assert role.sync_status == Role.SyncStatus.SHRINK_ONLY
    assert role.missing_mappings == [f"n{i:02d}" for i in range(45)]
    assert "over the account's quota" in role.last_error
    assert policies.same_policy(live_policy(role.name), json.loads(role.live_policy))

    # The next sync keeps the shrink-only policy (nothing to write) and says so again.
    again = iam_services.role_sync(role_id=role.pk)
    assert again.outcome == "failed" and again.reason.startswith("shrink-only: kept the live trust")

    # sync_iam and --check show the state; both exit non-zero.
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("sync_iam", "--check", stdout=out)
    assert "role prod/deploy-web: failed: shrink-only: IAM holds the live trust minus" in out.getvalue()
    assert "missing n00, n01" in out.getvalue()

    # Fewer mappings: the full policy fits again; the next sync writes it and clears the state.
    for mapping in Mapping.objects.filter(name__startswith="n").exclude(name="n00"):
        services.registry_delete(mapping, actor="test")
    assert iam_services.role_sync(role_id=role.pk).outcome == "updated"
    role.refresh_from_db()
    assert role.sync_status == Role.SyncStatus.IN_SYNC and role.missing_mappings == [] and role.last_error == ""
    assert iam_lets_in(role.name, "team-00/service-with-a-long-name")


def test_iam_refusing_the_full_policy_for_good_writes_the_shrink_only_one(synced):
    """IAM's own quota can be lower than the one the account records: IAM refuses the full
    policy (LimitExceeded), the shrink-only one goes in."""
    issuer, role = synced
    role.account.trust_policy_limit = 4096
    services.registry_save(role.account, actor="test")
    services.registry_delete(Mapping.objects.get(name="legacy"), actor="test")
    add_many(issuer, role, count=25)
    role.refresh_from_db()
    assert 2048 < selectors.role_desired_policy(role).size <= 4096

    def iam_quota(params, **kwargs):
        if len(params["PolicyDocument"]) > 2048:
            raise botocore.exceptions.ClientError(
                {
                    "Error": {"Code": "LimitExceeded", "Message": "Cannot exceed quota for ACLSizePerRole: 2048"},
                    "ResponseMetadata": {"HTTPStatusCode": 409},
                },
                "UpdateAssumeRolePolicy",
            )

    aws_iam.iam_client().meta.events.register("before-parameter-build.iam.UpdateAssumeRolePolicy", iam_quota)
    line = iam_services.role_sync(role_id=role.pk)
    assert line.outcome == "failed" and "LimitExceeded: Cannot exceed quota for ACLSizePerRole" in line.reason
    assert line.reason.startswith("shrink-only: wrote")
    assert not iam_lets_in(role.name, "legacy/app")
    assert iam_lets_in(role.name, "platform/web")
    role.refresh_from_db()
    assert role.sync_status == Role.SyncStatus.SHRINK_ONLY and "LimitExceeded" in role.last_error
