"""The audit log in the admin: read-only for everyone, filters, search, detail links, exports."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.utils.html import escape

from exchange.audit import AUDIT_FIELDS
from exchange.models import AuditEvent
from tests.console.factories import AuditEventFactory, denied
from tests.factories import AccountFactory, MappingFactory, RoleFactory

pytestmark = pytest.mark.django_db
LIST = "/admin/exchange/auditevent/"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def _ids(response) -> list[int]:
    return [event.pk for event in response.context["cl"].result_list]


def test_newest_first(admin_client):
    old, new = AuditEventFactory(time=T0), AuditEventFactory(time=T0 + timedelta(minutes=1))
    assert _ids(admin_client.get(LIST)) == [new.pk, old.pk]


def test_nobody_may_add_change_or_delete_not_even_a_superuser(admin_client, staff):
    event = AuditEventFactory()
    assert staff.is_superuser
    assert admin_client.get(LIST + "add/").status_code == 403
    assert admin_client.get(f"{LIST}{event.pk}/delete/").status_code == 403
    page = admin_client.get(f"{LIST}{event.pk}/change/")
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    before = AuditEvent.objects.values().get(pk=event.pk)
    response = admin_client.post(f"{LIST}{event.pk}/change/", {"reason": "tampered", "outcome": "granted"})
    assert response.status_code == 403
    admin_client.post(LIST, {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"})
    assert AuditEvent.objects.values().get(pk=event.pk) == before


@pytest.mark.parametrize(
    ("query", "wanted"),
    [
        ({"outcome": "denied"}, "denied"),
        ({"reason": "no_matching_mapping"}, "denied"),
        ({"issuer": "gitlab-example"}, "both"),
        ({"mapping": "web-main-deploy"}, "granted"),
        ({"project_path": "platform/web"}, "both"),
        ({"q": "mallory"}, "denied"),
        ({"q": "platform/web"}, "both"),
    ],
)
def test_filters_and_search(admin_client, query, wanted):
    granted = AuditEventFactory(time=T0)
    refused = denied(time=T0 + timedelta(minutes=1))
    AuditEventFactory(time=T0, project_path="platform/other", issuer="gitlab-other", mapping="x", user_login="carol")
    expected = {"denied": [refused.pk], "granted": [granted.pk], "both": [refused.pk, granted.pk]}[wanted]
    assert _ids(admin_client.get(LIST, query)) == expected


def test_list_shows_the_decision_with_its_reason_and_the_role(admin_client):
    AuditEventFactory(time=T0)
    denied(time=T0 + timedelta(minutes=1), requested_role_arn="arn:aws:iam::123456789012:role/deploy-api")
    page = admin_client.get(LIST).content.decode()
    assert "denied</strong>: no_matching_mapping" in page
    assert "123456789012/deploy-web" in page and "123456789012/deploy-api" in page  # granted, requested
    assert "2026-11-20 08:01:00" in page


def test_search_by_job_pipeline_and_request_id(admin_client):
    event = AuditEventFactory(job_id="4242", pipeline_id="777", request_id="req-abc")
    AuditEventFactory.create_batch(2)
    for q in ("4242", "777", "req-abc"):
        assert _ids(admin_client.get(LIST, {"q": q})) == [event.pk]


def test_date_hierarchy_drills_down_by_day(admin_client):
    day1 = AuditEventFactory(time=T0)
    AuditEventFactory(time=T0 + timedelta(days=1))
    assert _ids(admin_client.get(LIST, {"time__year": 2026, "time__month": 11, "time__day": 20})) == [day1.pk]


def test_detail_links_to_the_mapping_and_the_role(admin_client):
    role = RoleFactory(account=AccountFactory(account_id="123456789012"), name="deploy-web")
    mapping = MappingFactory(name="web-main-deploy", role=role)
    event = AuditEventFactory()
    page = admin_client.get(f"{LIST}{event.pk}/change/").content.decode()
    assert escape(event.detail) in page and event.job_id in page
    assert "Token verified" in page  # whether the claims below can be trusted
    # Links appear once the registry admin registers these models.
    from django.contrib import admin

    if admin.site.is_registered(type(mapping)):
        assert f"/admin/mappings/mapping/{mapping.pk}/change/" in page
        assert f"/admin/mappings/role/{role.pk}/change/" in page
    else:
        assert "web-main-deploy" in page and "prod/deploy-web" in page


def test_export_csv_has_the_current_filter_and_every_page(admin_client):
    for i in range(3):
        denied(time=T0 + timedelta(minutes=i))
    AuditEventFactory(time=T0)
    changelist = admin_client.get(LIST, {"outcome": "denied"}).content.decode()
    assert "export/csv/?outcome=denied" in changelist
    response = admin_client.get(LIST + "export/csv/", {"outcome": "denied"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 3 and {r["outcome"] for r in rows} == {"denied"}
    assert list(rows[0]) == list(AUDIT_FIELDS)


def test_export_csv_streams_large_exports_with_one_header(admin_client, monkeypatch):
    monkeypatch.setattr("console.admin.EXPORT_BATCH", 2)
    for i in range(5):
        AuditEventFactory(time=T0 + timedelta(minutes=i))
    body = b"".join(admin_client.get(LIST + "export/csv/").streaming_content).decode()
    assert body.count("request_id") == 1
    assert len(list(csv.DictReader(io.StringIO(body)))) == 5


def test_export_jsonl(admin_client):
    event = denied(time=T0, project_path="=cmd|' /C calc'!A0")
    body = b"".join(admin_client.get(LIST + "export/jsonl/", {"q": event.user_login}).streaming_content).decode()
    lines = [json.loads(line) for line in body.splitlines()]
    assert [line["request_id"] for line in lines] == [event.request_id]
    assert lines[0]["project_path"] == "=cmd|' /C calc'!A0"  # JSON is data, not a spreadsheet


def test_export_with_an_unknown_filter_is_400(admin_client):
    assert admin_client.get(LIST + "export/csv/", {"nope__bad": "1"}).status_code == 400


def test_exports_need_staff(client):
    response = client.get(LIST + "export/csv/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_value_filters_offer_recent_values_most_frequent_first(admin_client):
    now = datetime.now(UTC)
    AuditEventFactory.create_batch(2, time=now, project_path="platform/api")
    AuditEventFactory(time=now, project_path="platform/web")
    AuditEventFactory(time=now - timedelta(days=60), project_path="platform/ancient")
    response = admin_client.get(LIST)
    [spec] = [s for s in response.context["cl"].filter_specs if getattr(s, "parameter_name", None) == "project_path"]
    assert [value for value, _ in spec.lookup_choices] == ["platform/api", "platform/web"]
    # An older value from a link is still a working, visible filter.
    response = admin_client.get(LIST, {"project_path": "platform/ancient"})
    assert len(response.context["cl"].result_list) == 1
    [spec] = [s for s in response.context["cl"].filter_specs if getattr(s, "parameter_name", None) == "project_path"]
    assert "platform/ancient" in [value for value, _ in spec.lookup_choices]


def test_detail_links_to_explain_prefilled_with_the_job(admin_client):
    event = denied(time=T0, ref="feature/x", ref_protected="false")
    page = admin_client.get(f"{LIST}{event.pk}/change/").content.decode()
    href = re.search(r'href="([^"]+)" id="explain-event"', page).group(1).replace("&amp;", "&")
    response = admin_client.get(href)
    form = response.context["form"]
    assert form.initial["project_path"] == "platform/web" and form.initial["ref"] == "feature/x"
    assert "protected" not in form.initial
