"""docs/api.md#audit-trail for ``POST /api/v1/credentials``: the granted event is written before
the credentials leave, and when it cannot be written the request fails closed -- a 503 without a
key, a secret or a session token, and the subject token left unspent so that the job may retry.
(test_audit.py proves the same of the token endpoint, whose write is another code path.)"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from django.db import DatabaseError
from rest_framework.test import APIClient

from exchange import services
from exchange.models import AuditEvent, UsedToken
from tests.exchange import cases
from tests.exchange.conftest import exchange_params, post_form

CREDENTIALS = "/api/v1/credentials"
SECRETS = ("AccessKeyId", "SecretAccessKey", "SessionToken", "ASIA")


def assert_closed(response) -> None:
    assert response.status_code == 503, response.content
    body = response.json()
    assert body["error"] == "temporarily_unavailable"
    assert not any(secret.encode() in response.content for secret in SECRETS), response.content
    assert not UsedToken.objects.exists()


@pytest.mark.usefixtures("sts", "registry")
def test_credentials_whose_granted_event_cannot_be_written_are_not_handed_out(stand_in, web_main_claims, monkeypatch):
    def failing(*args, **kwargs):
        raise DatabaseError("the audit table is unavailable")

    token = stand_in.mint(stand_in.claims(web_main_claims))
    params = exchange_params(token, cases.DEPLOY_WEB)
    with monkeypatch.context() as patch:
        patch.setattr(services, "audit_record", failing)
        assert_closed(post_form(APIClient(), CREDENTIALS, params))
    assert not AuditEvent.objects.exists()

    retried = post_form(APIClient(), CREDENTIALS, params)  # the same token: it was never spent
    assert retried.status_code == 200, retried.content
    assert AuditEvent.objects.get(request_id=retried["X-Request-ID"]).outcome == "granted"


@pytest.mark.usefixtures("sts", "registry")
def test_a_real_database_failure_on_the_granted_event_fails_closed(api, stand_in, web_main_claims, monkeypatch):
    """Not a mock: the event's insert itself fails (its request_id is already taken)."""
    taken = uuid.uuid4().hex
    AuditEvent.objects.create(
        time=datetime.now(UTC), request_id=taken, endpoint="credentials", outcome="denied", reason="x", detail="x"
    )
    from portal import middleware

    monkeypatch.setattr(middleware, "uuid", SimpleNamespace(uuid4=lambda: uuid.UUID(taken)))
    response = post_form(
        api, CREDENTIALS, exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.READONLY)
    )
    assert_closed(response)
    assert AuditEvent.objects.count() == 1
