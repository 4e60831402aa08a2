"""The registry admin: "who can assume what" at a glance, and every write through the services."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from mappings import services
from mappings.models import Issuer, Mapping, Role
from mappings.selectors import registry_version
from tests.factories import AccountFactory, IssuerFactory, MappingFactory, RoleFactory
from tests.registry.conftest import mapping_form

pytestmark = pytest.mark.django_db


@pytest.fixture
def deploy_web():
    return RoleFactory(name="deploy-web", account=AccountFactory(name="prod", account_id="123456789012"))


def test_adding_a_mapping_goes_through_the_service(platform_admin, deploy_web):
    issuer = IssuerFactory()
    before = registry_version()
    response = platform_admin.post(reverse("admin:mappings_mapping_add"), mapping_form(issuer, deploy_web))
    assert response.status_code == 302, response.content.decode()[:2000]
    mapping = Mapping.objects.get(name="web-main")
    assert (mapping.protected, mapping.pipeline_sources, mapping.environment) == (True, ["push", "web"], None)
    assert registry_version() == before + 1


def test_changing_a_mapping_goes_through_the_service(platform_admin, deploy_web):
    issuer = IssuerFactory()
    mapping = services.mapping_create(
        actor="test", name="web-main", issuer=issuer, role=deploy_web, project="platform/web", ref="main"
    )
    before = registry_version()
    response = platform_admin.post(
        reverse("admin:mappings_mapping_change", args=[mapping.pk]),
        mapping_form(issuer, deploy_web, ref="release/*", protected=None, pipeline_sources=None),
    )
    assert response.status_code == 302
    mapping.refresh_from_db()
    assert (mapping.ref, mapping.protected, mapping.pipeline_sources) == ("release/*", False, [])
    assert registry_version() == before + 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("project", "platform/$web", "policy variable"),
        ("project", "", "must not be empty; use &#x27;*&#x27; to match anything"),
        ("ref", "main:x", "separates the fields"),
        ("environment", "prod env", "whitespace"),
    ],
)
def test_a_bad_pattern_shows_the_validator_message(platform_admin, deploy_web, field, value, message):
    issuer = IssuerFactory()
    before = registry_version()
    response = platform_admin.post(
        reverse("admin:mappings_mapping_add"), mapping_form(issuer, deploy_web, **{field: value})
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Mapping.objects.exists()
    assert registry_version() == before


def test_deleting_a_mapping_goes_through_the_service(platform_admin):
    mapping = MappingFactory()
    before = registry_version()
    response = platform_admin.post(reverse("admin:mappings_mapping_delete", args=[mapping.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Mapping.objects.exists()
    assert registry_version() == before + 1


def test_bulk_delete_goes_through_the_service(platform_admin):
    mappings = [MappingFactory(), MappingFactory()]
    before = registry_version()
    response = platform_admin.post(
        reverse("admin:mappings_mapping_changelist"),
        {"action": "delete_selected", "_selected_action": [m.pk for m in mappings], "post": "yes"},
    )
    assert response.status_code == 302
    assert not Mapping.objects.exists()
    assert registry_version() == before + 2


def test_mappings_inline_on_the_role_page_go_through_the_service(platform_admin, deploy_web):
    issuer = IssuerFactory()
    old = MappingFactory(role=deploy_web, issuer=issuer, name="old")
    url = reverse("admin:mappings_role_change", args=[deploy_web.pk])
    page = platform_admin.get(url)
    assert page.status_code == 200
    assert "old" in page.content.decode()
    before = registry_version()
    prefix = "mappings"
    data = {
        "account": deploy_web.account.pk,
        "name": "deploy-web",
        "max_session_seconds": "3600",
        "session_tags": "on",
        f"{prefix}-TOTAL_FORMS": "2",
        f"{prefix}-INITIAL_FORMS": "1",
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
        f"{prefix}-0-id": old.pk,
        f"{prefix}-0-role": deploy_web.pk,
        f"{prefix}-0-name": "old",
        f"{prefix}-0-issuer": issuer.pk,
        f"{prefix}-0-project": old.project,
        f"{prefix}-0-ref": old.ref,
        f"{prefix}-0-ref_type": "any",
        f"{prefix}-0-DELETE": "on",
        f"{prefix}-1-role": deploy_web.pk,
        f"{prefix}-1-name": "new",
        f"{prefix}-1-issuer": issuer.pk,
        f"{prefix}-1-project": "platform/*",
        f"{prefix}-1-ref": "main",
        f"{prefix}-1-ref_type": "branch",
        f"{prefix}-1-enabled": "on",
    }
    response = platform_admin.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert list(Mapping.objects.values_list("name", flat=True)) == ["new"]
    # role save + mapping delete + mapping create, each through the service
    assert registry_version() == before + 3


def test_mapping_list_answers_who_can_assume_what(platform_admin, deploy_web):
    issuer = IssuerFactory()
    MappingFactory(name="web-main", issuer=issuer, role=deploy_web, project="platform/web", ref="main")
    MappingFactory(
        name="old-migration",
        issuer=issuer,
        role=deploy_web,
        project="platform/api",
        expires_at=timezone.now() - timedelta(days=1),
    )
    page = platform_admin.get(reverse("admin:mappings_mapping_changelist")).content.decode()
    for text in ("web-main", "gitlab-example", "platform/web", "arn:aws:iam::123456789012:role/deploy-web", "expired"):
        assert text in page
    expired = platform_admin.get(reverse("admin:mappings_mapping_changelist"), {"expired": "yes"}).content.decode()
    assert "old-migration" in expired and "web-main" not in expired
    current = platform_admin.get(reverse("admin:mappings_mapping_changelist"), {"expired": "no"}).content.decode()
    assert "web-main" in current and "old-migration" not in current


@pytest.mark.parametrize(
    ("query", "found", "missing"), [("platform/api", "api-x", "web-x"), ("deploy-api", "api-x", "web-x")]
)
def test_mapping_search_by_project_and_role(platform_admin, query, found, missing):
    issuer = IssuerFactory()
    account = AccountFactory(name="prod", account_id="123456789012")
    MappingFactory(name="web-x", issuer=issuer, role=RoleFactory(account=account, name="deploy-web"))
    MappingFactory(
        name="api-x", issuer=issuer, role=RoleFactory(account=account, name="deploy-api"), project="platform/api"
    )
    page = platform_admin.get(reverse("admin:mappings_mapping_changelist"), {"q": query}).content.decode()
    assert f">{found}<" in page and f">{missing}<" not in page


def test_mapping_list_filters_by_account_and_enabled(platform_admin):
    issuer = IssuerFactory()
    prod = AccountFactory(name="prod", account_id="123456789012")
    staging = AccountFactory(name="staging", account_id="210987654321")
    MappingFactory(name="in-prod", issuer=issuer, role=RoleFactory(account=prod))
    MappingFactory(name="in-staging", issuer=issuer, role=RoleFactory(account=staging), enabled=False)
    url = reverse("admin:mappings_mapping_changelist")
    page = platform_admin.get(url, {"role__account__id__exact": staging.pk}).content.decode()
    assert ">in-staging<" in page and ">in-prod<" not in page
    page = platform_admin.get(url, {"enabled__exact": "1"}).content.decode()
    assert ">in-prod<" in page and ">in-staging<" not in page


def test_issuer_admin_edits_audiences_one_per_line(platform_admin):
    before = registry_version()
    response = platform_admin.post(
        reverse("admin:mappings_issuer_add"),
        {"name": "gitlab-com", "url": "https://gitlab.com", "audiences": "https://a.example\r\nhttps://b.example\r\n"},
    )
    assert response.status_code == 302
    assert Issuer.objects.get().audiences == ["https://a.example", "https://b.example"]
    assert registry_version() == before + 1
    page = platform_admin.get(reverse("admin:mappings_issuer_change", args=[Issuer.objects.get().pk]))
    assert "https://a.example\nhttps://b.example" in page.content.decode()


def test_account_admin_shows_the_validator_message(platform_admin):
    response = platform_admin.post(
        reverse("admin:mappings_account_add"),
        {
            "name": "prod",
            "account_id": "12345",
            "mode": "brokered",
            "audience": "sts.amazonaws.com",
            "trust_policy_limit": "2048",
        },
    )
    assert response.status_code == 200
    assert "An AWS account id is exactly 12 digits" in response.content.decode()


def test_role_list_and_sync_state_is_read_only(platform_admin, deploy_web):
    page = platform_admin.get(reverse("admin:mappings_role_changelist")).content.decode()
    assert "arn:aws:iam::123456789012:role/deploy-web" in page
    change = platform_admin.get(reverse("admin:mappings_role_change", args=[deploy_web.pk])).content.decode()
    assert 'name="sync_status"' not in change and 'name="max_session_seconds"' in change


def test_admin_classes_keep_the_sync_mixins_first():
    from django.contrib import admin as django_admin

    from mappings.admin_sync import AccountSyncAdminMixin, RoleSyncAdminMixin
    from mappings.models import Account

    assert type(django_admin.site._registry[Role]).__mro__[1] is RoleSyncAdminMixin
    assert type(django_admin.site._registry[Account]).__mro__[1] is AccountSyncAdminMixin


@pytest.mark.parametrize("model", ["mapping", "role", "account", "issuer"])
def test_list_pages_do_not_query_per_row(platform_admin, django_assert_max_num_queries, model):
    issuer = IssuerFactory()
    for n in range(3):
        account = AccountFactory(name=f"account-{n}", account_id=f"{123456789000 + n}")
        for _ in range(3):
            MappingFactory(issuer=issuer, role=RoleFactory(account=account))
    with django_assert_max_num_queries(12):
        response = platform_admin.get(reverse(f"admin:mappings_{model}_changelist"))
    assert response.status_code == 200


def test_session_revocations_are_listed_read_only(platform_admin, deploy_web):
    from mappings.iam import revocations
    from mappings.models import SessionRevocation

    revocations.session_revoke(role=deploy_web, actor="alice", reason="incident 42")
    page = platform_admin.get(reverse("admin:mappings_sessionrevocation_changelist")).content.decode()
    assert "incident 42" in page and "alice" in page
    change = platform_admin.get(
        reverse("admin:mappings_sessionrevocation_change", args=[SessionRevocation.objects.get().pk])
    ).content.decode()
    assert 'name="reason"' not in change  # read-only
    assert platform_admin.get(reverse("admin:mappings_sessionrevocation_add")).status_code == 403
