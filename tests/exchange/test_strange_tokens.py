"""Strange but validly signed tokens (issue 12, finding 7): hostile JSON values in a token the
issuer really signed are refused with a 4xx and exactly one audit event, never a 500 after the
minted token was signed, never a 503 without an event; and no error page shows a token."""

from __future__ import annotations

import json
import math

import jwt
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from exchange import aws_sts
from exchange.models import AuditEvent, UsedToken
from mappings.claims import CATALOGUE, JsonType
from tests.exchange import cases
from tests.exchange.conftest import exchange_params, post_form
from tests.exchange.gitlab_stand_in import GitLabKey

TOKEN = "/api/v1/token"
CREDENTIALS = "/api/v1/credentials"


def sign(stand_in, claims: dict) -> str:
    """Sign any JSON the way a (compromised or buggy) issuer could: PyJWS over our own bytes, so
    PyJWT's own claim checks on encoding do not get in the way; NaN and Infinity included."""
    payload = json.dumps(claims, allow_nan=True).encode()
    key = stand_in.signing
    return jwt.api_jws.encode(payload, key.private_key, algorithm="RS256", headers={"kid": key.kid})


def only_event(response) -> AuditEvent:
    events = list(AuditEvent.objects.filter(request_id=response["X-Request-ID"]))
    assert len(events) == 1
    assert AuditEvent.objects.count() == 1
    return events[0]


@pytest.mark.parametrize("exp", [10**400, 10**20, 253402300800, math.inf, -math.inf, math.nan, -1])
@pytest.mark.parametrize("path", [TOKEN, CREDENTIALS])
def test_an_absurd_exp_is_an_invalid_claim_before_anything_is_minted(
    api, registry, stand_in, web_main_claims, exp, path
):
    token = sign(stand_in, stand_in.claims(web_main_claims, exp=exp))
    response = post_form(api, path, exchange_params(token, cases.DEPLOY_WEB))
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_grant"
    event = only_event(response)
    assert (event.reason, event.token_verified, event.minted_jti) == ("invalid_claim", True, None)
    assert "exp" in event.detail
    assert not UsedToken.objects.exists()


@pytest.mark.parametrize("claim", ["iat", "nbf"])
@pytest.mark.parametrize("value", [10**400, math.inf, math.nan, -5])
def test_absurd_iat_and_nbf_are_invalid_claims(api, registry, stand_in, web_main_claims, claim, value):
    token = sign(stand_in, stand_in.claims(web_main_claims, **{claim: value}))
    response = post_form(api, TOKEN, exchange_params(token, cases.DEPLOY_WEB))
    assert response.status_code == 400, response.content
    assert only_event(response).reason == "invalid_claim"


def forge(stand_in, claims: dict) -> str:
    """``sign``'s bytes, signed by an attacker's key under the issuer's kid."""
    payload = json.dumps(claims, allow_nan=True).encode()
    attacker = GitLabKey().private_key
    return jwt.api_jws.encode(payload, attacker, algorithm="RS256", headers={"kid": stand_in.signing.kid})


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": 10**400},  # refused by the catalogue's number checks, before PyJWT computes with it
        {"iat": math.nan},
        {"nbf": math.inf},
        {"exp": 1},  # refused by PyJWT's own checks (expired)
        {"aud": "someone-else"},
        {},  # nothing wrong but the signature
    ],
)
def test_a_forged_token_is_a_bad_signature_whatever_its_claims(api, registry, stand_in, web_main_claims, overrides):
    """Whatever a forgery's claims, it is refused for its signature: never with a claim's reason,
    which would record the forger's claims as the issuer's word (token_verified)."""
    token = forge(stand_in, stand_in.claims(web_main_claims, **overrides))
    response = post_form(api, TOKEN, exchange_params(token, cases.DEPLOY_WEB))
    assert response.status_code == 400, response.content
    event = only_event(response)
    assert (event.reason, event.token_verified) == ("bad_signature", False)


@pytest.mark.parametrize(
    ("jti", "stored"),
    [
        ("abc\x00def", "abc\\x00def"),  # NUL: PostgreSQL text cannot hold it
        ("abc\ud800", "abc\\ud800"),  # a lone surrogate: not UTF-8
    ],
)
@pytest.mark.parametrize("path", [TOKEN, CREDENTIALS])
def test_nuls_and_lone_surrogates_in_jti_are_invalid_claims_with_their_event(
    api, registry, stand_in, web_main_claims, jti, stored, path
):
    token = sign(stand_in, stand_in.claims(web_main_claims, jti=jti))
    response = post_form(api, path, exchange_params(token, cases.DEPLOY_WEB))
    assert response.status_code == 400, response.content
    event = only_event(response)
    assert (event.reason, event.token_verified) == ("invalid_claim", True)
    assert "jti" in event.detail
    assert event.jti == stored
    assert not UsedToken.objects.exists()


def test_the_audit_writer_escapes_nuls_rather_than_dropping_them(api, db):
    token = ".".join(
        [
            jwt.utils.base64url_encode(b'{"alg":"RS256","kid":"k"}').decode(),
            jwt.utils.base64url_encode(b'{"iss":"https://x\\u0000y","sub":"a\\u0000"}').decode(),
            "c2ln",
        ]
    )
    response = post_form(api, TOKEN, exchange_params(token))
    event = only_event(response)
    assert (event.reason, event.iss, event.sub) == ("unknown_issuer", "https://x\\x00y", "a\\x00")


# --- any hostile JSON value, validly signed ----------------------------------------------------

_BAD_CHARACTERS = st.sampled_from(["\x00", "\ud800", "\udfff", "\udbff"])
_hostile_text = st.builds(lambda a, bad, b: a + bad + b, st.text(max_size=8), _BAD_CHARACTERS, st.text(max_size=8))
_numbers = st.one_of(
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**63, 2**64 + 1]),
    st.floats(allow_nan=True, allow_infinity=True),
)
_json = st.recursive(
    st.none() | st.booleans() | _numbers | st.text(max_size=10) | _hostile_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
_not_a_string = st.one_of(
    st.booleans(), _numbers, st.lists(_json, max_size=3), st.dictionaries(st.text(max_size=5), _json, max_size=3)
)
_bad_number = st.one_of(
    st.sampled_from([10**400, 2**64, 253402300800, -1, math.inf, -math.inf, math.nan]),
    st.integers(max_value=-1),
    st.integers(min_value=253402300800),
    st.booleans(),
    st.text(max_size=10),
    _hostile_text,
    st.lists(_json, max_size=2),
)


def _bad_value(claim) -> st.SearchStrategy:
    """A value the catalogue refuses for ``claim``."""
    if claim.json_type is JsonType.NUMBER:
        return _bad_number
    if claim.json_type is JsonType.AUDIENCE:
        return st.one_of(_hostile_text, st.lists(_hostile_text, min_size=1, max_size=3), _numbers)
    return st.one_of(_hostile_text, _not_a_string)


_bad_claims = st.lists(st.sampled_from(CATALOGUE), min_size=1, max_size=4, unique_by=lambda c: c.name).flatmap(
    lambda chosen: st.fixed_dictionaries({claim.name: _bad_value(claim) for claim in chosen})
)
_extra_claims = st.dictionaries(st.text(max_size=12).filter(lambda k: k not in {c.name for c in CATALOGUE}), _json)


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=_bad_claims, extra=_extra_claims, path=st.sampled_from([TOKEN, CREDENTIALS]))
def test_any_validly_signed_hostile_payload_is_a_4xx_with_exactly_one_audit_event(
    api, registry, stand_in, web_main_claims, bad, extra, path
):
    claims = {**extra, **stand_in.claims(web_main_claims), **bad}
    response = post_form(api, path, exchange_params(sign(stand_in, claims), cases.DEPLOY_WEB))
    assert 400 <= response.status_code < 500, (response.status_code, response.content)
    assert response.json()["error"]
    events = AuditEvent.objects.filter(request_id=response["X-Request-ID"])
    assert [e.outcome for e in events] == ["denied"]
    assert events[0].minted_jti is None
    assert not UsedToken.objects.exists()


# --- no error page shows a token ---------------------------------------------------------------


@pytest.mark.parametrize("path", [TOKEN, CREDENTIALS])
def test_the_debug_error_page_shows_neither_the_gitlab_token_nor_the_minted_one(
    registry, stand_in, web_main_claims, settings, monkeypatch, path
):
    """A failure after the token was minted (here: the granted event's bookkeeping after its
    write raising) with DEBUG on: the technical 500 page lists every frame's variables, but not
    the sensitive ones."""
    settings.DEBUG = True
    minted = []

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    from exchange import audit, keys

    real_token = keys.Signer.token

    def remembering_token(self):
        minted.append(real_token(self))
        return minted[-1]

    monkeypatch.setattr(keys.Signer, "token", remembering_token)
    monkeypatch.setattr(audit, "_log_after_commit", broken)  # both record paths, after the answer is built
    monkeypatch.setattr(
        aws_sts,
        "assume_role_with_web_identity",
        lambda **kwargs: aws_sts.Credentials(
            access_key_id="ASIAEXAMPLE",
            secret_access_key="SECRETSECRET",
            session_token="SESSIONSESSION",
            expiration=__import__("datetime").datetime(2030, 1, 1),
        ),
    )
    subject_token = stand_in.mint(stand_in.claims(web_main_claims))
    client = APIClient(raise_request_exception=False)
    response = post_form(client, path, exchange_params(subject_token, cases.DEPLOY_WEB))
    assert response.status_code == 500
    page = response.content.decode()
    assert "RuntimeError" in page and "boom" in page  # it is the debug page, with its frames
    assert "sensitive_variables_wrapper" not in page or "********" in page
    assert minted, "the failure must come after the token was minted"
    for secret in (subject_token, minted[0], "SECRETSECRET", "SESSIONSESSION"):
        assert secret not in page
        assert secret[:60] not in page  # not even cut short in a repr
