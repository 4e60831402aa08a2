"""The exchange authenticates the subject token, never the client (docs/api.md#token-exchange:
``invalid_client`` 401 is not used). Whatever a CI job's HTTP client adds -- an ``Authorization``
header meant for something else, a platform API token, an admin's session cookie without a CSRF
token -- the answer is the exchange's own: 200, or a 400 in the error format with its audit event,
never a 401 or a 403 of the API's authentication."""

from __future__ import annotations

import base64
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from console.services import api_token_create
from exchange.models import AuditEvent
from tests.exchange import cases
from tests.exchange.conftest import exchange_params

TOKEN = "/api/v1/token"
CREDENTIALS = "/api/v1/credentials"
BASIC = "Basic " + base64.b64encode(b"rolegate:client-secret").decode()


def post(client: APIClient, path: str, params: dict, **headers):
    return client.post(path, data=urlencode(params), content_type="application/x-www-form-urlencoded", **headers)


@pytest.fixture
def staff_api_token(db) -> str:
    staff = User.objects.create_user("lead", is_staff=True)
    return api_token_create(user=staff, name="tests")[1]


@pytest.mark.parametrize("kind", ["bearer junk", "basic", "staff api token", "not a scheme"])
def test_an_authorization_header_changes_nothing(api, registry, stand_in, web_main_claims, staff_api_token, kind):
    authorization = {
        "bearer junk": "Bearer rg_not-a-real-token",
        "basic": BASIC,
        "staff api token": f"Bearer {staff_api_token}",
        "not a scheme": "whatever",
    }[kind]
    granted = post(
        api,
        TOKEN,
        exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.DEPLOY_WEB),
        HTTP_AUTHORIZATION=authorization,
    )
    assert granted.status_code == 200, granted.content
    assert AuditEvent.objects.get(request_id=granted["X-Request-ID"]).outcome == "granted"

    refused = post(api, TOKEN, exchange_params("a.b.c", cases.DEPLOY_WEB), HTTP_AUTHORIZATION=authorization)
    assert refused.status_code == 400, refused.content
    body = refused.json()
    assert body["error"] == "invalid_grant" and body["request_id"] == refused["X-Request-ID"]
    assert AuditEvent.objects.get(request_id=refused["X-Request-ID"]).reason == "malformed_token"


@pytest.mark.parametrize("path", [TOKEN, CREDENTIALS])
def test_a_bad_authorization_header_is_not_a_401(api, db, path):
    response = post(api, path, exchange_params("a.b.c", cases.DEPLOY_WEB), HTTP_AUTHORIZATION="Bearer rg_nope")
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_grant"
    assert "WWW-Authenticate" not in response


def test_an_admins_session_without_a_csrf_token_is_not_refused(registry, stand_in, web_main_claims):
    """The exchange reads no cookie: an admin's browser session does not make it demand a CSRF
    token (and does not authorise anything either)."""
    admin = User.objects.create_superuser("admin", password="a-long-password-0123456789")
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(admin)
    granted = post(client, TOKEN, exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.DEPLOY_WEB))
    assert granted.status_code == 200, granted.content
    refused = post(client, TOKEN, exchange_params("a.b.c", cases.DEPLOY_WEB))
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
