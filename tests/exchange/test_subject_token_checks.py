"""Every way a subject token can be unacceptable: invalid_grant, each with its own reason code."""

from __future__ import annotations

import time

import jwt
import pytest

from exchange.models import AuditEvent
from tests.exchange import cases
from tests.exchange.conftest import exchange_params, post_form
from tests.exchange.gitlab_stand_in import GitLabKey, b64, unsigned_token

TOKEN = "/api/v1/token"


def refused(api, token, role_arn=cases.DEPLOY_WEB):
    response = post_form(api, TOKEN, exchange_params(token, role_arn))
    assert response.status_code == 400, response.content
    body = response.json()
    event = AuditEvent.objects.get(request_id=response["X-Request-ID"])
    assert body["request_id"] == event.request_id
    assert event.outcome == "denied"
    assert AuditEvent.objects.count() == 1
    return body, event


def assert_invalid_grant(api, token, reason, *, verified=False):
    body, event = refused(api, token)
    assert body["error"] == "invalid_grant"
    assert event.reason == reason, event.detail
    assert body["error_description"] == event.detail
    assert event.token_verified is verified
    return body, event


def test_expired(api, registry, stand_in, web_main_claims):
    now = int(time.time())
    claims = stand_in.claims(web_main_claims, iat=now - 900, nbf=now - 900, exp=now - 31)
    body, _ = assert_invalid_grant(api, stand_in.mint(claims), "token_expired")
    assert "exp" in body["error_description"]


def test_expired_within_leeway_is_accepted(api, registry, stand_in, web_main_claims):
    now = int(time.time())
    claims = stand_in.claims(web_main_claims, iat=now - 900, nbf=now - 900, exp=now - 10)
    assert post_form(api, TOKEN, exchange_params(stand_in.mint(claims), cases.DEPLOY_WEB)).status_code == 200


def test_future_nbf(api, registry, stand_in, web_main_claims):
    claims = stand_in.claims(web_main_claims, nbf=int(time.time()) + 120)
    assert_invalid_grant(api, stand_in.mint(claims), "token_not_yet_valid")


def test_future_iat(api, registry, stand_in, web_main_claims):
    claims = stand_in.claims(web_main_claims, iat=int(time.time()) + 120)
    assert_invalid_grant(api, stand_in.mint(claims), "token_not_yet_valid")


def test_wrong_audience(api, registry, stand_in, web_main_claims):
    claims = stand_in.claims(web_main_claims, aud="https://someone-else.example.com")
    assert_invalid_grant(api, stand_in.mint(claims), "wrong_audience")


def test_unknown_issuer_keys_are_never_fetched(api, registry, stand_in, web_main_claims):
    claims = stand_in.claims(web_main_claims, iss="http://127.0.0.1:9/evil")
    body, event = assert_invalid_grant(api, stand_in.mint(claims), "unknown_issuer")
    assert "not registered" in body["error_description"]
    assert event.iss == "http://127.0.0.1:9/evil"
    assert stand_in.hits == []


def test_alg_none(api, registry, stand_in, web_main_claims):
    token = unsigned_token({"alg": "none", "typ": "JWT", "kid": stand_in.signing.kid}, stand_in.claims(web_main_claims))
    assert_invalid_grant(api, token, "alg_not_allowed")


def test_hs256_signed_with_the_rsa_public_key(api, registry, stand_in, web_main_claims):
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import serialization

    public_pem = stand_in.signing.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": stand_in.signing.kid}
    unsigned = unsigned_token(header, stand_in.claims(web_main_claims)).rsplit(".", 1)[0]
    signature = hmac.new(public_pem, unsigned.encode(), hashlib.sha256).digest()
    assert_invalid_grant(api, f"{unsigned}.{b64(signature)}", "alg_not_allowed")


def test_forged_signature_with_a_known_kid(api, registry, stand_in, web_main_claims):
    attacker = GitLabKey()
    token = jwt.encode(
        stand_in.claims(web_main_claims), attacker.private_key, algorithm="RS256", headers={"kid": stand_in.signing.kid}
    )
    assert_invalid_grant(api, token, "bad_signature")


def test_tampered_payload(api, registry, stand_in, web_main_claims):
    header, _, signature = stand_in.mint(stand_in.claims(web_main_claims)).split(".")
    evil = stand_in.claims(web_main_claims, project_path="platform/web", ref="main", user_login="mallory")
    payload = unsigned_token({}, evil).split(".")[1]
    assert_invalid_grant(api, f"{header}.{payload}.{signature}", "bad_signature")


def test_unknown_kid(api, registry, stand_in, web_main_claims):
    stranger = GitLabKey()
    assert_invalid_grant(api, stand_in.mint(stand_in.claims(web_main_claims), key=stranger), "unknown_kid")


def test_no_kid(api, registry, stand_in, web_main_claims):
    token = jwt.encode(stand_in.claims(web_main_claims), stand_in.signing.private_key, algorithm="RS256")
    assert_invalid_grant(api, token, "unknown_kid")


def test_jku_and_jwk_headers_are_ignored(api, registry, stand_in, web_main_claims):
    """An attacker's own key, advertised in jku/x5u/jwk headers, is never fetched nor used."""
    attacker = GitLabKey()
    headers = {
        "jku": f"{stand_in.url}/attacker/jwks.json",
        "x5u": f"{stand_in.url}/attacker/cert.pem",
        "jwk": attacker.public(),
    }
    token = stand_in.mint(stand_in.claims(web_main_claims), key=attacker, headers=headers)
    assert_invalid_grant(api, token, "unknown_kid")
    assert not any(path.startswith("/attacker") for path in stand_in.hits)
    forged_kid = jwt.encode(
        stand_in.claims(web_main_claims),
        attacker.private_key,
        algorithm="RS256",
        headers={**headers, "kid": stand_in.signing.kid},
    )
    AuditEvent.objects.all().delete()
    assert_invalid_grant(api, forged_kid, "bad_signature")


@pytest.mark.parametrize(
    "claim",
    [
        "jti",
        "project_path",
        "ref",
        "ref_type",
        "ref_protected",
        "job_id",
        "project_id",
        "namespace_path",
        "pipeline_source",
        "pipeline_id",
        "sub",
    ],
)
def test_missing_claim(api, registry, stand_in, web_main_claims, claim):
    claims = stand_in.claims(web_main_claims, **{claim: None})
    body, _ = assert_invalid_grant(api, stand_in.mint(claims), "missing_claim", verified=True)
    assert claim in body["error_description"]


@pytest.mark.parametrize("claim", ["exp", "iat", "aud"])
def test_missing_registered_claim(api, registry, stand_in, web_main_claims, claim):
    claims = stand_in.claims(web_main_claims, **{claim: None})
    body, _ = assert_invalid_grant(api, stand_in.mint(claims), "missing_claim")
    assert claim in body["error_description"]


@pytest.mark.parametrize(
    ("overrides", "check"),
    [
        ({"ref_protected": True}, "ref_protected"),
        ({"ref_protected": "yes"}, "ref_protected"),
        ({"ref_type": "commit"}, "ref_type"),
        ({"project_id": 20}, "project_id"),
        ({"job_id": 302}, "job_id"),
        ({"project_path": ["platform/web"]}, "project_path"),
        ({"ref": {"name": "main"}}, "ref"),
        ({"environment": 1}, "environment"),
        ({"project_path": "platform/web:ref_type:branch:ref:main"}, "':'"),
        ({"ref": "main:evil"}, "':'"),
        ({"ref": "x" * 300}, "too long"),
        ({"jti": ""}, "jti"),
        # The new conditions' claims are JSON strings in GitLab's tokens: a boolean or a list is refused.
        ({"environment_protected": True}, "environment_protected"),
        ({"deployment_tier": ["production"]}, "deployment_tier"),
        ({"runner_environment": 1}, "runner_environment"),
        ({"ci_config_ref_uri": {"path": ".gitlab-ci.yml"}}, "ci_config_ref_uri"),
        ({"ci_config_ref_uri": "g/" + "x" * 1100}, "too long"),
        # GitLab's ids are JSON strings of digits: a number (or anything else) is refused, never
        # compared with a mapping's id or turned into a session tag.
        ({"namespace_id": 72}, "namespace_id"),
        ({"namespace_id": ["72"]}, "namespace_id"),
        ({"project_id": 20.0}, "project_id"),
        ({"namespace_id": "7" * 65}, "too long"),
    ],
)
def test_wrongly_typed_or_shaped_claims(api, registry, stand_in, web_main_claims, overrides, check):
    claims = stand_in.claims(web_main_claims, **overrides)
    body, event = assert_invalid_grant(api, stand_in.mint(claims), "invalid_claim", verified=True)
    assert check in body["error_description"]
    assert event.issuer == "gitlab-test"


def test_non_numeric_exp(api, registry, stand_in, web_main_claims):
    claims = stand_in.claims(web_main_claims, exp="tomorrow")
    body, _ = refused(api, stand_in.mint(claims))
    assert body["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b.c",
        "....",
        b64(b'{"alg":"RS256"}') + ".notbase64!." + "sig",
        b64(b"[1,2]") + "." + b64(b"{}") + ".",
        b64(b'{"alg":"RS256"}') + "." + b64(b'"a string"') + ".",
    ],
)
def test_garbage_tokens(api, registry, token):
    body, event = refused(api, token)
    assert body["error"] == "invalid_grant"
    assert event.reason == "malformed_token"
    assert not event.token_verified


def test_a_token_longer_than_16_kib_is_an_invalid_request(api, registry):
    body, _ = refused(api, "eyJ" * 6000)
    assert body["error"] == "invalid_request"
    assert "subject_token" in body["error_description"]


def assert_keys_unavailable(api, token, retry_after="30"):
    """GitLab's outage is not the token's fault: 503 with Retry-After (the JWKS refresh interval,
    when the next fetch may be tried), so CI clients retry."""
    response = post_form(api, TOKEN, exchange_params(token, cases.DEPLOY_WEB))
    assert response.status_code == 503, response.content
    assert response.json()["error"] == "temporarily_unavailable"
    assert response["Retry-After"] == retry_after
    assert AuditEvent.objects.get(request_id=response["X-Request-ID"]).reason == "jwks_unavailable"


def test_issuer_down_with_nothing_cached(api, registry, stand_in, web_main_claims):
    stand_in.down = True
    assert_keys_unavailable(api, stand_in.mint(stand_in.claims(web_main_claims)))


def test_retry_after_follows_the_jwks_refresh_interval(api, registry, stand_in, web_main_claims, settings):
    settings.ROLEGATE_JWKS_MIN_REFRESH_SECONDS = 7
    stand_in.down = True
    assert_keys_unavailable(api, stand_in.mint(stand_in.claims(web_main_claims)), retry_after="7")


@pytest.mark.parametrize("jwks_body", [b"not json", b"[]", {"keys": "nope"}, b"x" * (300 * 1024)])
def test_broken_jwks_is_unavailable(api, registry, stand_in, web_main_claims, jwks_body):
    stand_in.jwks_body = jwks_body
    assert_keys_unavailable(api, stand_in.mint(stand_in.claims(web_main_claims)))


def test_replay_for_the_same_role_is_refused_but_another_role_is_fine(api, registry, stand_in, web_main_claims):
    token = stand_in.mint(stand_in.claims(web_main_claims))
    assert post_form(api, TOKEN, exchange_params(token, cases.DEPLOY_WEB)).status_code == 200
    second = post_form(api, TOKEN, exchange_params(token, cases.DEPLOY_WEB))
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    assert "already exchanged" in second.json()["error_description"]
    assert AuditEvent.objects.get(request_id=second["X-Request-ID"]).reason == "replay"
    assert post_form(api, TOKEN, exchange_params(token, cases.READONLY)).status_code == 200
    assert list(AuditEvent.objects.order_by("id").values_list("reason", flat=True)) == ["granted", "replay", "granted"]


def test_a_granted_exchange_reads_the_token_twice_and_verifies_its_signature_once(
    api, registry, stand_in, web_main_claims, monkeypatch
):
    """The hot path's verification: one read (to find the issuer and the key) and one
    ``jwt.decode`` (signature, then the registered claims); three reads and two RSA verifications
    before the claim checks were merged with the signature's."""
    loads, verifications = [], []
    load, verify = jwt.api_jws.PyJWS._load, jwt.algorithms.RSAAlgorithm.verify
    monkeypatch.setattr(jwt.api_jws.PyJWS, "_load", lambda self, *a: loads.append(1) or load(self, *a))
    monkeypatch.setattr(
        jwt.algorithms.RSAAlgorithm, "verify", lambda self, *a: verifications.append(1) or verify(self, *a)
    )
    response = post_form(api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.DEPLOY_WEB))
    assert response.status_code == 200, response.content
    assert (len(loads), len(verifications)) == (2, 1)
