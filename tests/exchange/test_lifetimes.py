"""Lifetimes the client is told about are the ones it gets (docs/api.md#token-exchange,
docs/api.md#credentials): ``expires_in`` is the minted token's own ``exp - iat``
(``ROLEGATE_TOKEN_LIFETIME``), and the session STS is asked for is the ``duration_seconds`` given,
by default one hour or the role's maximum when that is shorter."""

from __future__ import annotations

import time

import jwt
import pytest
from botocore.stub import ANY, Stubber

from exchange import aws_sts
from mappings import services
from mappings.models import Account, Issuer
from tests.exchange import cases
from tests.exchange.conftest import STS_ANSWER, exchange_params, post_form

TOKEN = "/api/v1/token"
CREDENTIALS = "/api/v1/credentials"
SHORT = cases.arn(cases.PROD, "deploy-short")


@pytest.mark.parametrize("lifetime", [60, 120, 300])
def test_expires_in_is_the_minted_tokens_lifetime(api, registry, stand_in, web_main_claims, settings, lifetime):
    settings.ROLEGATE_TOKEN_LIFETIME = lifetime
    before = int(time.time())
    response = post_form(api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.DEPLOY_WEB))
    after = int(time.time())
    assert response.status_code == 200, response.content
    body = response.json()
    minted = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert body["expires_in"] == lifetime == minted["exp"] - minted["iat"]
    assert before <= minted["iat"] <= after and minted["nbf"] <= minted["iat"]


@pytest.fixture
def short_role(registry):
    """A role whose maximum session is shorter than the default hour."""
    role = services.role_create(
        actor="tests", account=Account.objects.get(name="prod"), name="deploy-short", max_session_seconds=1800
    )
    services.mapping_create(
        actor="tests",
        name="web-main-short",
        issuer=Issuer.objects.get(name=cases.ISSUER_NAME),
        role=role,
        project="platform/web",
        ref="main",
        ref_type="branch",
        protected=True,
    )
    return role


@pytest.mark.parametrize(
    ("role_arn", "given", "asked"),
    [
        (cases.READONLY, "900", 900),  # max 7200
        (cases.READONLY, "7200", 7200),
        (cases.READONLY, None, 3600),  # default: one hour
        (cases.DEPLOY_WEB, "1200", 1200),  # max 3600
        (SHORT, None, 1800),  # default: the role's maximum when shorter than an hour
        (SHORT, "1800", 1800),
    ],
)
@pytest.mark.usefixtures("short_role")
def test_sts_is_asked_for_the_duration_given_or_the_default(
    api, stand_in, web_main_claims, monkeypatch, role_arn, given, asked
):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    extra = {} if given is None else {"duration_seconds": given}
    params = exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), role_arn, **extra)
    with Stubber(aws_sts.client()) as stubber:
        stubber.add_response(
            "assume_role_with_web_identity",
            STS_ANSWER,
            {"RoleArn": role_arn, "RoleSessionName": "gl-20-302", "WebIdentityToken": ANY, "DurationSeconds": asked},
        )
        response = post_form(api, CREDENTIALS, params)
        stubber.assert_no_pending_responses()
    assert response.status_code == 200, response.content


@pytest.mark.usefixtures("short_role")
def test_a_duration_above_a_short_roles_maximum_is_refused_before_sts(api, stand_in, web_main_claims, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    params = exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), SHORT, duration_seconds="1801")
    with Stubber(aws_sts.client()):  # no response queued: any STS call would fail the request
        response = post_form(api, CREDENTIALS, params)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_target"
    assert "1800" in response.json()["error_description"]
