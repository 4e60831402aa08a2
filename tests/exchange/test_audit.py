"""The audit trail: fail closed, never a raw token or credential, and ``audit_export``."""

from __future__ import annotations

import csv
import io
import json
import logging
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection

from exchange import services
from exchange.models import AuditEvent, UsedToken
from tests.exchange import cases
from tests.exchange.conftest import assert_exchange_error, exchange_params, post_form

TOKEN = "/api/v1/token"


def failing_audit(*args, **kwargs):
    raise DatabaseError("the audit table is unavailable")


def test_a_grant_whose_audit_cannot_be_written_returns_no_token(api, registry, stand_in, web_main_claims, monkeypatch):
    monkeypatch.setattr(services, "audit_record", failing_audit)
    monkeypatch.setattr(services, "audit_record_spending", failing_audit)  # the token endpoint's one statement
    response = post_form(api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.DEPLOY_WEB))
    assert_exchange_error(response, status=503, error="temporarily_unavailable", retry_after="5")
    assert b"eyJ" not in response.content
    assert not UsedToken.objects.exists()  # rolled back with the audit event: the job may retry
    assert not AuditEvent.objects.exists()


def test_a_denial_whose_audit_cannot_be_written_fails_closed(api, registry, stand_in, feature_mr_claims, monkeypatch):
    monkeypatch.setattr(services, "audit_record", failing_audit)
    response = post_form(api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(feature_mr_claims)), cases.READONLY))
    assert_exchange_error(response, status=503, error="temporarily_unavailable", retry_after="5")


def test_a_real_database_failure_on_the_audit_insert_fails_closed(
    api, registry, stand_in, web_main_claims, monkeypatch
):
    """Not a mock: the audit event's insert itself fails (request_id already taken)."""
    import uuid

    taken = uuid.uuid4().hex
    AuditEvent.objects.create(
        time=datetime.now(UTC), request_id=taken, endpoint="token", outcome="denied", reason="x", detail="x"
    )

    from portal import middleware

    monkeypatch.setattr(middleware, "uuid", SimpleNamespace(uuid4=lambda: uuid.UUID(taken)))
    token = stand_in.mint(stand_in.claims(web_main_claims))
    response = post_form(api, TOKEN, exchange_params(token, cases.DEPLOY_WEB))
    assert response.status_code == 503
    assert "access_token" not in response.json()
    assert not UsedToken.objects.exists()
    assert AuditEvent.objects.count() == 1


def test_no_raw_token_signature_or_minted_token_in_database_or_logs(api, registry, stand_in, web_main_claims, caplog):
    caplog.set_level(logging.DEBUG)
    subject = stand_in.mint(stand_in.claims(web_main_claims))
    granted = post_form(api, TOKEN, exchange_params(subject, cases.DEPLOY_WEB)).json()
    post_form(api, TOKEN, exchange_params(subject, cases.DEPLOY_WEB))  # replay, denied
    forged = subject.rsplit(".", 1)[0] + ".c2lnbmF0dXJl"
    post_form(api, TOKEN, exchange_params(forged, cases.DEPLOY_WEB))  # bad signature, denied
    assert AuditEvent.objects.count() == 3

    secrets = [subject, subject.rsplit(".", 1)[1], granted["access_token"], granted["access_token"].rsplit(".", 1)[1]]
    dump = io.StringIO()
    call_command("dumpdata", "exchange", stdout=dump)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM exchange_auditevent")
        rows = str(cursor.fetchall())
    for secret in secrets:
        assert secret not in dump.getvalue()
        assert secret not in rows
        assert secret not in caplog.text


@pytest.fixture
def events(db):
    base = dict(endpoint="token", detail="d", reason="granted", outcome="granted")
    AuditEvent.objects.create(time=datetime(2026, 1, 2, tzinfo=UTC), request_id="b", project_path="=cmd()", **base)
    AuditEvent.objects.create(time=datetime(2026, 1, 1, tzinfo=UTC), request_id="a", **base)
    AuditEvent.objects.create(time=datetime(2026, 1, 3, tzinfo=UTC), request_id="c", **base)


def test_audit_export_jsonl_oldest_first(events):
    out = io.StringIO()
    call_command("audit_export", stdout=out)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["request_id"] for r in rows] == ["a", "b", "c"]
    assert rows[0]["time"] == "2026-01-01T00:00:00Z"
    assert "token_verified" in rows[0]


def test_audit_export_since_and_csv(events):
    out = io.StringIO()
    call_command("audit_export", "--since", "2026-01-02T00:00:00Z", "--format", "csv", stdout=out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["request_id"] for r in rows] == ["b", "c"]
    assert rows[0]["project_path"] == "'=cmd()"


def test_audit_export_refuses_a_bad_since(events):
    with pytest.raises(CommandError, match="not an ISO 8601"):
        call_command("audit_export", "--since", "yesterday")


def test_used_tokens_prune(db):
    UsedToken.objects.create(issuer="i", jti="old", role_arn="r", expires_at=datetime(2020, 1, 1, tzinfo=UTC))
    UsedToken.objects.create(issuer="i", jti="new", role_arn="r", expires_at=datetime(2999, 1, 1, tzinfo=UTC))
    assert services.used_tokens_prune() == 1
    assert list(UsedToken.objects.values_list("jti", flat=True)) == ["new"]
