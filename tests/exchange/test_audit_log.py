"""ROLEGATE_AUDIT_LOG: each audit event, once committed, as one JSON line on ``rolegate.audit``."""

from __future__ import annotations

import io
import json
import logging

import pytest

from exchange.models import AuditEvent
from portal.log_context import ContextFilter, json_formatter
from tests.exchange import cases
from tests.exchange.conftest import exchange_params, post_form

TOKEN = "/api/v1/token"


@pytest.fixture
def audit_lines():
    """The rolegate.audit logger written as JSON lines, as a log shipper reads them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("rolegate.audit")
    logger.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)


def test_each_event_is_one_json_line_after_commit_and_never_a_token(
    api, registry, stand_in, web_main_claims, settings, audit_lines, django_capture_on_commit_callbacks
):
    settings.ROLEGATE_AUDIT_LOG = True
    subject = stand_in.mint(stand_in.claims(web_main_claims))
    with django_capture_on_commit_callbacks(execute=True):
        granted = post_form(api, TOKEN, exchange_params(subject, cases.DEPLOY_WEB))
        assert audit_lines() == []  # not before the row is committed
    with django_capture_on_commit_callbacks(execute=True):
        replay = post_form(api, TOKEN, exchange_params(subject, cases.DEPLOY_WEB))

    lines = audit_lines()
    assert [line["audit"]["outcome"] for line in lines] == ["granted", "denied"]
    assert [line["audit"]["request_id"] for line in lines] == [granted["X-Request-ID"], replay["X-Request-ID"]]
    # The line's own request id is the request's: a shipper joins it to the request's other lines.
    assert [line["request_id"] for line in lines] == [granted["X-Request-ID"], replay["X-Request-ID"]]
    assert lines[0]["logger"] == "rolegate.audit" and lines[0]["level"] == "INFO"
    assert lines[0]["audit"]["project_path"] == web_main_claims["project_path"]
    stored = AuditEvent.objects.get(request_id=granted["X-Request-ID"])
    assert lines[0]["audit"]["minted_jti"] == stored.minted_jti

    text = json.dumps(lines)
    minted = granted.json()["access_token"]
    for secret in (subject, subject.rsplit(".", 1)[1], minted, minted.rsplit(".", 1)[1]):
        assert secret not in text


def test_off_by_default(api, registry, stand_in, web_main_claims, audit_lines, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        post_form(api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.DEPLOY_WEB))
    assert AuditEvent.objects.count() == 1
    assert audit_lines() == []


def test_an_event_rolled_back_is_never_logged(
    api, registry, stand_in, feature_mr_claims, settings, audit_lines, django_capture_on_commit_callbacks
):
    settings.ROLEGATE_AUDIT_LOG = True
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        post_form(api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(feature_mr_claims)), cases.READONLY))
    assert len(callbacks) == 1  # waiting for the commit, which a rollback never gives
    assert audit_lines() == []
