"""GET /api/v1/audit-events/: newest first, cursor pagination, filters, the shape of docs/api.md#audit-event-fields."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from exchange.audit import AUDIT_FIELDS
from tests.console.factories import AuditEventFactory, denied

pytestmark = pytest.mark.django_db
URL = "/api/v1/audit-events/"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def test_events_newest_first_in_the_section_7_shape(api):
    old = AuditEventFactory(time=T0)
    new = denied(time=T0 + timedelta(hours=1))
    body = api.get(URL).json()
    assert set(body) == {"results", "next"}
    assert [e["request_id"] for e in body["results"]] == [new.request_id, old.request_id]
    assert list(body["results"][0]) == list(AUDIT_FIELDS)
    assert body["results"][1]["time"] == "2026-11-20T08:00:00Z"
    assert body["results"][0]["outcome"] == "denied"
    assert body["next"] is None


def test_cursor_pagination_walks_every_event_once_even_with_equal_times(api):
    events = [AuditEventFactory(time=T0 + timedelta(minutes=i // 2)) for i in range(7)]
    seen, url = [], URL + "?page_size=3"
    while url:
        body = api.get(url).json()
        seen += [e["request_id"] for e in body["results"]]
        url = body["next"]
    expected = [e.request_id for e in sorted(events, key=lambda e: (e.time, e.id), reverse=True)]
    assert seen == expected


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("outcome", "denied"),
        ("reason", "no_matching_mapping"),
        ("issuer", "gitlab-other"),
        ("role_arn", "arn:aws:iam::123456789012:role/other"),
        ("mapping", "other-mapping"),
        ("project_path", "platform/other"),
        ("job_id", "999"),
        ("pipeline_id", "888"),
        ("user_login", "mallory"),
        ("request_id", "req-wanted"),
    ],
)
def test_each_filter_selects_exactly_the_matching_events(api, param, value):
    AuditEventFactory.create_batch(2)
    overrides = {
        "outcome": {"outcome": "denied"},
        "reason": {"reason": "no_matching_mapping", "outcome": "denied"},
    }.get(param, {param: value})
    wanted = AuditEventFactory(**overrides)
    body = api.get(URL, {param: value}).json()
    assert [e["request_id"] for e in body["results"]] == [wanted.request_id]


def test_since_is_inclusive_and_until_exclusive(api):
    for hours in range(4):
        AuditEventFactory(time=T0 + timedelta(hours=hours), job_id=str(hours))
    body = api.get(URL, {"since": "2026-11-20T09:00:00Z", "until": "2026-11-20T11:00:00+00:00"}).json()
    assert [e["job_id"] for e in body["results"]] == ["2", "1"]


@pytest.mark.parametrize(("param", "value"), [("since", "yesterday"), ("until", "2026-13-01"), ("outcome", "maybe")])
def test_bad_filter_values_are_400_with_a_clear_message(api, param, value):
    response = api.get(URL, {param: value})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_request"
    assert param in body["error_description"]
    if param != "outcome":
        assert "ISO 8601" in body["error_description"]


@pytest.mark.parametrize("raw", ["p=notadate", "o=1&p=2026-13-45", "r=1&p=x", "p=" + "9" * 40])
def test_a_well_encoded_cursor_with_a_bad_position_is_a_client_error_not_a_500(api, raw):
    """Found in review: DRF decodes these, and the bad time then failed inside the query."""
    cursor = base64.b64encode(raw.encode()).decode()
    response = api.get(URL, {"cursor": cursor})
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_request"


def test_garbage_cursor_is_a_client_error_not_a_500(api):
    response = api.get(URL, {"cursor": "%%%not-base64"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_openapi_schema_documents_the_api_with_bearer_auth(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json() if response["Content-Type"].startswith("application/vnd.oai.openapi+json") else None
    if schema is None:
        import yaml

        schema = yaml.safe_load(response.content)
    assert schema["components"]["securitySchemes"]["apiToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["apiToken"]["description"],
    }
    audit = schema["paths"]["/api/v1/audit-events/"]["get"]
    assert {"apiToken": []} in audit["security"]
    assert {p["name"] for p in audit["parameters"]} >= {"outcome", "project_path", "since", "until", "cursor"}
    assert "/api/v1/explain" in schema["paths"]


def test_openapi_schema_is_valid_without_warnings(tmp_path):
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    import yaml

    schema = yaml.safe_load((tmp_path / "schema.yaml").read_text())
    page = schema["components"]["schemas"]["AuditEventPage"]
    assert set(page["properties"]) == {"results", "next"}
    assert schema["components"]["schemas"]["ExplainResponse"]["properties"]["mappings"]["type"] == "array"
