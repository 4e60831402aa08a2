"""A role Rolegate stops managing (deleted, renamed, moved) has its IAM trust policy emptied by
the next sync of its account: IAM keeps a role's last policy (found in review)."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from mappings import policies, services
from mappings.iam import tasks
from mappings.models import RetiredRole
from tests.iam.helpers import ROLEGATE, create_iam_role, live_policy, registry

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("rolegate_issuer")]


@pytest.fixture
def rolegate_issuer(settings):
    settings.ROLEGATE_ISSUER = ROLEGATE


def sync_account(account) -> list[dict]:
    return tasks.sync_account.apply(kwargs={"account_id": account.pk}).get()


def synced_registry(roles=("deploy-web", "deploy-api")):
    issuer, account, made = registry(roles=roles)
    for role in made:
        create_iam_role(role.name)
    sync_account(account)
    for role in made:
        assert live_policy(role.name) != policies.trusts_nobody()
    return issuer, account, made


def test_a_deleted_role_is_emptied_by_the_next_sync_then_forgotten(moto_aws):
    _, account, [web, _] = synced_registry()
    services.registry_delete(web, actor="test")
    assert RetiredRole.objects.filter(account_id=account.account_id, role_name="deploy-web").exists()

    lines = sync_account(account)
    assert {"label": "retired role 123456789012/deploy-web", "outcome": "updated", "reason": "trusts nobody now",
            "diff": ""} in lines  # fmt: skip
    assert live_policy("deploy-web") == policies.trusts_nobody()
    assert live_policy("deploy-api") != policies.trusts_nobody()
    assert not RetiredRole.objects.exists()
    assert all("retired" not in line["label"] for line in sync_account(account))


def test_a_renamed_role_empties_the_old_iam_role(moto_aws):
    _, account, [_, api] = synced_registry()
    create_iam_role("deploy-api-v2")
    services.registry_update(api, actor="test", name="deploy-api-v2")
    sync_account(account)
    assert live_policy("deploy-api") == policies.trusts_nobody()
    assert "rolegate.example.com:sub" in str(live_policy("deploy-api-v2"))


def test_a_role_recreated_under_a_retired_name_is_managed_again_not_emptied(moto_aws):
    issuer, account, [web, _] = synced_registry()
    services.registry_delete(web, actor="test")
    again = services.role_create(actor="test", account=account, name="deploy-web")
    services.mapping_create(actor="test", name="again", issuer=issuer, role=again, project="platform/web")
    assert not RetiredRole.objects.exists()
    sync_account(account)
    assert live_policy("deploy-web") != policies.trusts_nobody()


def test_a_retired_role_already_gone_from_iam_is_forgotten(moto_aws):
    _, account, [web, _] = synced_registry()
    services.registry_delete(web, actor="test")
    from mappings.iam import aws_iam

    aws_iam.iam_client().delete_role(RoleName="deploy-web")
    lines = sync_account(account)
    assert any(line["label"].endswith("/deploy-web") and line["reason"] == "gone from IAM" for line in lines)
    assert not RetiredRole.objects.exists()


def test_sync_iam_check_reports_a_retired_role_and_the_next_sync_empties_it(moto_aws):
    _, _, [web, _] = synced_registry()
    services.registry_delete(web, actor="test")
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("sync_iam", "--check", stdout=out)
    assert "retired role 123456789012/deploy-web: differs" in out.getvalue()
    assert RetiredRole.objects.exists()  # --check changes nothing

    call_command("sync_iam", stdout=io.StringIO())
    assert live_policy("deploy-web") == policies.trusts_nobody()


def test_roles_of_an_account_no_longer_managed_are_emptied_by_sync_iam(moto_aws):
    _, account, roles = synced_registry()
    for role in roles:
        services.registry_delete(role, actor="test")
    services.registry_delete(account, actor="test")
    out = io.StringIO()
    call_command("sync_iam", stdout=out)
    assert "retired role 123456789012/deploy-api: updated: trusts nobody now" in out.getvalue()
    assert live_policy("deploy-api") == policies.trusts_nobody()
    assert live_policy("deploy-web") == policies.trusts_nobody()


def test_retired_roles_are_listed_read_only_in_the_admin(admin_client):
    RetiredRole.objects.create(account_id="123456789012", role_name="deploy-old", last_error="AccessDenied: nope")
    page = admin_client.get("/admin/mappings/retiredrole/")
    assert page.status_code == 200
    assert b"deploy-old" in page.content and b"AccessDenied" in page.content
    assert admin_client.get("/admin/mappings/retiredrole/add/").status_code == 403
