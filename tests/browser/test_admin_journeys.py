"""The admin's main journeys in a real browser: log in, create a mapping and find it, explain a
refusal, filter the audit log and download it as CSV."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.contrib import admin
from django.utils import timezone

from mappings.models import Mapping
from tests.console.factories import AuditEventFactory, denied
from tests.factories import web_main_deploy

pytestmark = pytest.mark.browser


@pytest.fixture
def registry(transactional_db):
    """gitlab-example, account prod, role deploy-web; web-main-deploy: platform/web protected main."""
    mapping = web_main_deploy()
    return {"issuer": mapping.issuer, "role": mapping.role}


def test_log_in_and_see_the_console_links(logged_in):
    page = logged_in
    assert page.locator("#rolegate-console").is_visible()
    page.click("text=Dashboard")
    page.wait_for_url("**/admin/rolegate/dashboard/")
    assert page.locator("#per-day svg").count() == 1


def test_create_a_mapping_and_see_it_in_the_list(logged_in, registry):
    if not admin.site.is_registered(Mapping):
        pytest.skip("the registry admin (mappings/admin.py) is not on this branch yet")
    page = logged_in
    page.goto("/admin/mappings/mapping/add/")
    page.fill("#id_name", "api-main-deploy")
    page.select_option("#id_issuer", label=str(registry["issuer"]))
    page.select_option("#id_role", label=str(registry["role"]))
    page.fill("#id_project", "platform/api")
    page.fill("#id_ref", "main")
    page.click("input[name=_save]")
    page.wait_for_url("**/admin/mappings/mapping/")
    assert page.locator("#result_list").get_by_text("api-main-deploy").is_visible()
    assert Mapping.objects.filter(name="api-main-deploy", project="platform/api").exists()


def test_explain_shows_why_a_feature_branch_is_refused(logged_in, registry):
    page = logged_in
    page.goto("/admin/rolegate/explain/")
    page.select_option("#id_issuer", "gitlab-example")
    page.fill("#id_project_path", "platform/web")
    page.fill("#id_ref", "feature/login")
    page.select_option("#id_pipeline_source", "merge_request_event")
    page.click("input[name=_explain]")
    assert page.locator("#decision").inner_text() == "denied"
    first = page.locator("#candidates tr.failed .first-failure").first.inner_text()
    assert "ref" in first and "main" in first and "feature/login" in first


def test_filter_the_audit_log_and_download_csv(logged_in):
    now = timezone.now()
    AuditEventFactory.create_batch(2, time=now - timedelta(minutes=5))
    refused = denied(time=now - timedelta(minutes=1), user_login="mallory")
    page = logged_in
    page.goto("/admin/exchange/auditevent/")
    assert page.locator("#result_list tbody tr").count() == 3
    page.locator("#changelist-filter").get_by_role("link", name="denied").first.click()
    page.wait_for_url("**outcome__exact=denied**")
    assert page.locator("#result_list tbody tr").count() == 1
    with page.expect_download() as info:
        page.click("a.rolegate-export-csv")
    download = info.value
    assert download.suggested_filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(download.path().read_text(encoding="utf-8"))))
    assert [(r["request_id"], r["outcome"], r["user_login"]) for r in rows] == [
        (refused.request_id, "denied", "mallory")
    ]
