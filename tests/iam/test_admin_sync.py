"""The sync admin mixins, on tiny ModelAdmins (the registry admin inherits them the same way)."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.admin import AdminSite
from django.contrib.messages.storage.cookie import CookieStorage

from mappings import policies
from mappings.admin_sync import AccountSyncAdminMixin, RoleSyncAdminMixin
from mappings.iam import aws_iam
from mappings.models import Account, Mapping, Role
from tests.iam.helpers import PLACEHOLDER, ROLEGATE, create_iam_role, live_policy, registry

pytestmark = [pytest.mark.django_db]

site = AdminSite(name="iam-sync-test")


def noop(modeladmin, request, queryset):
    pass


class RoleAdmin(RoleSyncAdminMixin, admin.ModelAdmin):
    actions = [noop]
    readonly_fields = ("created_at",)
    fieldsets = [(None, {"fields": ("account", "name", "session_tags", "created_at")})]


class AccountAdmin(AccountSyncAdminMixin, admin.ModelAdmin):
    pass


@pytest.fixture
def request_(rf, admin_user):
    request = rf.post("/")
    request.user = admin_user
    request._messages = CookieStorage(request)
    return request


@pytest.fixture(autouse=True)
def rolegate_issuer(settings):
    settings.ROLEGATE_ISSUER = ROLEGATE


def messages_of(request) -> list[str]:
    return [str(m) for m in request._messages._queued_messages]


def test_role_admin_shows_sync_state_in_its_own_section(request_):
    _, _, [role] = registry()
    model_admin = RoleAdmin(Role, site)
    readonly = model_admin.get_readonly_fields(request_, role)
    assert readonly[0] == "created_at" and "desired_policy" in readonly and "sync_status" in readonly
    fieldsets = model_admin.get_fieldsets(request_, role)
    assert fieldsets[0][1]["fields"] == ["account", "name", "session_tags", "created_at"]
    assert fieldsets[-1][0] == "IAM sync" and "policy_diff" in fieldsets[-1][1]["fields"]
    assert all(name != "IAM sync" for name, _ in model_admin.get_fieldsets(request_, None))
    # The section says what 'pending' means and how to sync; drift reads as words, not a red cross.
    assert "sync_iam" in fieldsets[-1][1]["description"] and "Sync IAM now" in fieldsets[-1][1]["description"]
    assert "drift_state" in fieldsets[-1][1]["fields"] and "drift" not in fieldsets[0][1]["fields"]
    assert model_admin.drift_state(role) == "— (not synced yet)"
    role.live_policy, role.drift = "{}", True
    assert "differs" in model_admin.drift_state(role)


def test_sync_written_fields_are_never_form_fields(request_):
    _, _, [role] = registry()
    form = admin.ModelAdmin(Role, site).get_form(request_, role)
    written = {"live_policy", "desired_policy_sha256", "policy_size", "sync_warnings", "sync_queued_at"}
    assert not written & set(form.base_fields)


def test_role_admin_preview_size_warnings_and_diff(request_, settings):
    _, _, [role] = registry()
    model_admin = RoleAdmin(Role, site)
    preview = model_admin.desired_policy(role)
    assert preview.startswith("<pre>") and "rolegate.example.com:sub" in preview and "\n" in preview
    assert model_admin.policy_size_vs_quota(role).endswith("/ 2048 characters")
    assert model_admin.iam_warnings(role) == "—"
    assert "not synced yet" in model_admin.policy_diff(role)

    role.live_policy = policies.minify(PLACEHOLDER)
    assert "ec2.amazonaws.com" in model_admin.policy_diff(role)
    role.live_policy = policies.minify(model_admin_desired(role))
    assert "no difference" in model_admin.policy_diff(role)

    mapping = role.mappings.get()
    mapping.protected = True
    mapping.save()
    role.session_tags = False  # turned off after the mapping was written
    role.save()
    assert "grants nothing" in model_admin.iam_warnings(role)


def model_admin_desired(role):
    from mappings.iam.selectors import role_desired_policy

    return role_desired_policy(role).document


def test_policy_too_large_is_explained_in_the_admin(request_):
    issuer, _, [role] = registry()
    from mappings.models import Mapping

    # Written behind the services' back: they refuse a change that leaves a policy over its quota.
    for i in range(60):
        Mapping.objects.create(name=f"m{i}", issuer=issuer, role=role, project=f"group-{i}/long-service")
    shown = RoleAdmin(Role, site).policy_size_vs_quota(role)
    assert "<strong>" in shown and "over the account" in shown and "4096" in shown


def test_sync_now_action_combines_with_the_admins_actions_and_runs(moto_aws, request_):
    _, _, [role] = registry()
    create_iam_role("deploy-web")
    model_admin = RoleAdmin(Role, site)
    actions = model_admin.get_actions(request_)
    assert {"noop", "sync_iam_now", "delete_selected"} <= set(actions)
    func, _, _ = actions["sync_iam_now"]
    func(model_admin, request_, Role.objects.filter(pk=role.pk))
    assert messages_of(request_) == ["role prod/deploy-web: updated"]
    assert "rolegate.example.com:sub" in str(live_policy("deploy-web"))


def test_sync_now_needs_change_permission(rf, django_user_model):
    user = django_user_model.objects.create_user("viewer", is_staff=True)
    request = rf.get("/")
    request.user = user
    assert "sync_iam_now" not in RoleAdmin(Role, site).get_actions(request)


def test_account_admin_sync_now_and_provider_display(moto_aws, request_):
    _, account, _ = registry()
    create_iam_role("deploy-web")
    model_admin = AccountAdmin(Account, site)
    assert "provider_status" in model_admin.get_readonly_fields(request_, account)
    assert f"arn:aws:iam::{account.account_id}:oidc-provider/rolegate.example.com" in model_admin.oidc_providers(
        account
    )
    func, _, _ = model_admin.get_actions(request_)["sync_iam_now"]
    func(model_admin, request_, Account.objects.all())
    assert messages_of(request_) == [
        "provider prod/rolegate.example.com: created",
        "role prod/deploy-web: updated",
    ]
    account.refresh_from_db()
    assert account.provider_status == Account.SyncStatus.IN_SYNC
    assert aws_iam.iam_client().list_open_id_connect_providers()["OpenIDConnectProviderList"]


def test_shrink_only_state_and_missing_mappings_are_shown(moto_aws, request_):
    issuer, _, [role] = registry()
    create_iam_role("deploy-web")
    model_admin = RoleAdmin(Role, site)
    assert model_admin.shrink_only_state(role) == "no"
    from mappings.iam import services as iam_services

    for i in range(60):  # behind the services' back: they refuse a write over the quota
        Mapping.objects.create(name=f"m{i:02}", issuer=issuer, role=role, project=f"group-{i}/long-service")
    iam_services.role_sync(role_id=role.pk)
    role.refresh_from_db()
    shown = model_admin.shrink_only_state(role)
    assert "<strong>yes</strong>" in shown and "missing: deploy-web-main, m00, m01" in shown
    assert "shrink_only_state" in model_admin.get_fieldsets(request_, role)[-1][1]["fields"]


def test_revoke_sessions_action_records_and_writes_the_revocation(moto_aws, request_):
    from mappings.models import SessionRevocation

    _, _, [role] = registry()
    create_iam_role("deploy-web")
    model_admin = RoleAdmin(Role, site)
    assert model_admin.session_revocation(role) == "No revocation in IAM."
    func, _, _ = model_admin.get_actions(request_)["revoke_sessions_now"]
    func(model_admin, request_, Role.objects.filter(pk=role.pk))
    [message] = messages_of(request_)
    assert message.startswith("role prod/deploy-web: updated: revoked sessions issued before ")
    record = SessionRevocation.objects.get()
    assert (record.actor, record.reason, record.applied_at is not None) == ("admin", "admin action", True)
    role.refresh_from_db()
    shown = model_admin.session_revocation(role)
    assert "are denied everything" in shown and "by admin (admin action)" in shown and "in IAM" in shown


def test_revoke_sessions_action_needs_change_permission(rf, django_user_model):
    user = django_user_model.objects.create_user("viewer", is_staff=True)
    request = rf.get("/")
    request.user = user
    assert "revoke_sessions_now" not in RoleAdmin(Role, site).get_actions(request)
