"""Claim text with control and bidi characters is shown as escapes wherever the admin or the
dashboard shows it (found in review: U+202E made ``evil/...`` read as ``live/...``), and the
admin's CSV export quotes, escapes and neutralises like ``audit_export``."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

import pytest
import time_machine

from tests.console.factories import AuditEventFactory, denied
from tests.factories import web_main_deploy

pytestmark = pytest.mark.django_db
LIST = "/admin/exchange/auditevent/"
RLO_PROJECT = "evil/\u202egol"  # shows as "evil/log" reversed: a reader sees "evil/" then "gol" backwards
ESC_REF = "\x1b[2Jmain"
RAW = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@pytest.fixture
def hostile(db):
    return denied(project_path=RLO_PROJECT, ref=ESC_REF, job_id="7\u2067", user_agent="ua\x9b")


def test_audit_event_page_shows_escapes(admin_client, hostile):
    page = admin_client.get(f"{LIST}{hostile.pk}/change/").content.decode()
    assert not RAW.search(page)
    assert "evil/\\u202egol" in page
    assert "\\x1b[2Jmain" in page
    assert "ua\\x9b" in page


def test_audit_changelist_and_its_filters_show_escapes(admin_client, hostile):
    with time_machine.travel(datetime(2026, 11, 27, tzinfo=UTC), tick=False):
        page = admin_client.get(LIST).content.decode()
    assert not RAW.search(page)
    assert page.count("evil/\\u202egol") >= 2  # the row and the project filter's choice
    assert "7\\u2067" in page


def test_dashboard_tables_and_charts_show_escapes(admin_client, hostile):
    with time_machine.travel(datetime(2026, 11, 27, tzinfo=UTC), tick=False):
        page = admin_client.get("/admin/rolegate/dashboard/").content.decode()
    assert not RAW.search(page)
    assert page.count("evil/\\u202egol") >= 2  # the table and the chart label


def test_explain_page_shows_escapes(admin_client):
    web_main_deploy()
    page = admin_client.post(
        "/admin/rolegate/explain/",
        {
            "issuer": "gitlab-example",
            "project_path": "platform/web",
            "ref": "ma\u202ein",
            "ref_type": "branch",
            "pipeline_source": "push",
            "token": "",
        },
    ).content.decode()
    result = page.split('id="explain-result"', 1)[1]
    assert not RAW.search(result)
    assert "ma\\u202ein" in result


def test_admin_csv_export_quotes_escapes_and_neutralises(admin_client):
    AuditEventFactory(project_path="ok;=6*7;x", ref=ESC_REF)
    body = b"".join(admin_client.get(LIST + "export/csv/").streaming_content).decode()
    assert "\x1b" not in body
    header, row, _ = body.split("\r\n")
    assert header.startswith('"time","request_id"')
    assert row.startswith('"') and row.endswith('"')
    record = next(csv.DictReader(io.StringIO(body)))
    assert record["project_path"] == "ok;'=6*7;x"
    assert record["ref"] == "\\x1b[2Jmain"
    for semicolon_cell in row.split(";"):
        assert semicolon_cell.strip('"')[:1] not in "=+-@", row
