"""Fixtures of the exchange tests: a stand-in GitLab on 127.0.0.1, the shared registry of
``cases.py``, and helpers to call the exchange and to verify its tokens the way AWS does."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

import jwt
import pytest
from moto import mock_aws
from rest_framework.test import APIClient

from exchange import aws_sts, gitlab, keys
from mappings import selectors
from tests.exchange import cases
from tests.exchange.gitlab_stand_in import GitLabKey, StandInGitLab

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
# What a stubbed STS answers AssumeRoleWithWebIdentity (botocore's Stubber).
STS_ANSWER = {
    "Credentials": {
        "AccessKeyId": "ASIAEXAMPLEEXAMPLE12",
        "SecretAccessKey": "secret-access-key-example-0123456789",
        "SessionToken": "session-token-example",
        "Expiration": datetime(2030, 1, 1, tzinfo=UTC),
    }
}
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"


@pytest.fixture
def sts(monkeypatch):
    """moto's STS, and a fresh client of ours that reaches it."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL_STS", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        aws_sts.reset_client()
        yield
    aws_sts.reset_client()


@pytest.fixture(scope="session")
def gitlab_key() -> GitLabKey:
    """The stand-in GitLab's RSA key: generated once per session."""
    return GitLabKey()


@pytest.fixture(scope="session")
def _gitlab_server(gitlab_key):
    server = StandInGitLab(gitlab_key)
    yield server
    server.stop()


@pytest.fixture
def stand_in(_gitlab_server) -> StandInGitLab:
    _gitlab_server.reset()
    return _gitlab_server


@pytest.fixture(autouse=True)
def _fresh_process_caches(settings):
    """Each test starts like a new process: no cached JWKS, signing key, registry or STS client."""
    settings.ROLEGATE_RATE_LIMIT = 0
    gitlab.forget_cached_keys()
    keys.forget_cached_keys()
    selectors._cached = None
    aws_sts.reset_client()
    yield
    gitlab.forget_cached_keys()
    keys.forget_cached_keys()
    selectors._cached = None


@pytest.fixture
def registry(db, stand_in):
    """The registry of ``cases.py`` with the stand-in GitLab as issuer ``gitlab-test``."""
    return cases.build_registry(stand_in.url)


@pytest.fixture
def api() -> APIClient:
    return APIClient()


def exchange_params(token: str, audience: str | None = None, **extra) -> dict:
    params = {"grant_type": GRANT, "subject_token": token, "subject_token_type": JWT_TYPE}
    if audience is not None:
        params["audience"] = audience
    params.update(extra)
    return params


def post_form(api: APIClient, path: str, params: dict | list):
    """POST ``params`` (a dict, or a list of pairs to repeat a name) as a form body."""
    return api.post(path, data=urlencode(params), content_type="application/x-www-form-urlencoded")


def assert_exchange_error(response, *, status: int, error: str, retry_after: str | None = None) -> dict:
    """What every refusal of the exchange answers (docs/api.md, "Errors"): the status, JSON (not a
    look-alike ``application/*+json``), ``no-store`` and ``Pragma: no-cache``, the OAuth error body
    whose ``request_id`` is the response's ``X-Request-ID`` (its audit event's), and
    ``Retry-After`` when the refusal says when to come back."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert (response["Cache-Control"], response["Pragma"]) == ("no-store", "no-cache")
    body = response.json()
    assert set(body) == {"error", "error_description", "request_id"}
    assert (body["error"], body["request_id"]) == (error, response["X-Request-ID"])
    assert response.get("Retry-After") == retry_after
    return body


def verify_like_aws(api: APIClient, token: str, *, audience: str) -> dict:
    """Verify a minted token as STS does: discovery -> jwks_uri -> key by kid -> RS256."""
    from django.conf import settings

    discovery = api.get("/.well-known/openid-configuration").json()
    assert discovery["issuer"] == settings.ROLEGATE_ISSUER
    jwks_path = discovery["jwks_uri"].removeprefix(settings.ROLEGATE_ISSUER)
    published = {k["kid"]: k for k in api.get(jwks_path).json()["keys"]}
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    key = jwt.PyJWK(published[header["kid"]])
    return jwt.decode(
        token,
        key=key.key,
        algorithms=["RS256"],
        audience=audience,
        issuer=settings.ROLEGATE_ISSUER,
        options={"require": ["exp", "iat", "nbf", "sub", "jti"]},
    )


def second_gitlab(server: StandInGitLab, *, audiences: list[str]) -> None:
    """Register ``server`` as a second issuer, ``gitlab-other``, with its own mapping to
    deploy-web (platform/web, protected main), beside the shared registry's issuer."""
    from mappings import services
    from mappings.models import Role

    other = services.issuer_create(actor="tests", name="gitlab-other", url=server.url, audiences=audiences)
    services.mapping_create(
        actor="tests",
        name="other-web-main-deploy",
        issuer=other,
        role=Role.objects.get(account__name="prod", name="deploy-web"),
        project="platform/web",
        ref="main",
        ref_type="branch",
        protected=True,
    )
