"""Rolegate's own keys: the OIDC endpoints, encryption at rest, RFC 7638 kids, and a rotation
during which every token in flight keeps verifying."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import time_machine
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.core.management import call_command

from exchange import keys
from exchange.models import SigningKey
from tests.exchange import cases
from tests.exchange.conftest import exchange_params, post_form, verify_like_aws

TOKEN = "/api/v1/token"


def test_discovery_document(api, db):
    response = api.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "max-age=" in response["Cache-Control"]
    doc = response.json()
    assert doc["issuer"] == settings.ROLEGATE_ISSUER
    assert doc["jwks_uri"] == f"{settings.ROLEGATE_ISSUER}/.well-known/jwks.json"
    assert doc["token_endpoint"] == f"{settings.ROLEGATE_ISSUER}/api/v1/token"
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "urn:ietf:params:oauth:grant-type:token-exchange" in doc["grant_types_supported"]
    for name in ("response_types_supported", "subject_types_supported", "claims_supported"):
        assert doc[name]
    assert "https://aws.amazon.com/tags" in doc["claims_supported"]


def test_jwks_publishes_public_parts_only(api, db):
    response = api.get("/.well-known/jwks.json")
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "max-age=" in response["Cache-Control"]
    (key,) = response.json()["keys"]
    assert set(key) == {"kty", "n", "e", "kid", "alg", "use"}
    assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig")
    assert key["kid"] == keys.thumbprint(key)
    assert api.post("/.well-known/jwks.json").status_code == 405


def test_rfc7638_thumbprint_example():
    jwk = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJE"
            "CPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Q"
            "vzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6"
            "WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert keys.thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_private_key_is_encrypted_at_rest(db, settings):
    kid, private_key = keys.current_signing_key()
    row = SigningKey.objects.get(kid=kid)
    der = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    stored = bytes(row.private_key_encrypted)
    assert der not in stored and der[-64:] not in stored
    assert keys._decrypt(stored, kid).private_numbers() == private_key.private_numbers()
    settings.SECRET_KEY = "another-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
    with pytest.raises(keys.SigningKeyError, match="DJANGO_SECRET_KEY"):
        keys._decrypt(stored, kid)


def test_the_first_key_is_created_once(db):
    first = keys.current_signing_key()[0]
    keys.forget_cached_keys()
    assert keys.current_signing_key()[0] == first
    assert SigningKey.objects.count() == 1


def minted_kid(api, stand_in, claims) -> tuple[str, str]:
    response = post_form(api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(claims)), cases.DEPLOY_WEB))
    assert response.status_code == 200, response.content
    token = response.json()["access_token"]
    return jwt.get_unverified_header(token)["kid"], token


def published(api) -> list[str]:
    return [k["kid"] for k in api.get("/.well-known/jwks.json").json()["keys"]]


def test_rotation_keeps_every_token_in_flight_verifiable(api, registry, stand_in, web_main_claims, settings):
    settings.ROLEGATE_KEY_OVERLAP = 3600
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False) as clock:
        old_kid, _ = minted_kid(api, stand_in, web_main_claims)

        out = io.StringIO()
        call_command("rotate_signing_key", stdout=out)
        new_kid = SigningKey.objects.get(state="next").kid
        assert new_kid in out.getvalue() and "published as the next key" in out.getvalue()
        assert published(api) == [old_kid, new_kid]
        # A second rotation while one is under way changes nothing.
        call_command("rotate_signing_key", stdout=io.StringIO())
        assert SigningKey.objects.count() == 2

        kid, token = minted_kid(api, stand_in, web_main_claims)
        assert kid == old_kid  # still in the overlap period
        verify_like_aws(api, token, audience=cases.STS_AUDIENCE)

        clock.shift(timedelta(seconds=3600))
        kid, _ = minted_kid(api, stand_in, web_main_claims)
        assert kid == new_kid
        assert published(api) == [old_kid, new_kid]
        assert SigningKey.objects.get(kid=old_kid).state == "previous"

        # Another process still holding the old key may sign for KEY_CACHE_SECONDS; those tokens
        # live ROLEGATE_TOKEN_LIFETIME: the old key stays published until then.
        old = SigningKey.objects.get(kid=old_kid)
        assert old.retires_at >= old.deactivated_at + timedelta(
            seconds=keys.KEY_CACHE_SECONDS + settings.ROLEGATE_TOKEN_LIFETIME
        )
        clock.move_to(old.retires_at - timedelta(seconds=1))
        keys.signing_keys_promote()
        assert published(api) == [old_kid, new_kid]
        clock.move_to(old.retires_at + timedelta(seconds=1))
        keys.signing_keys_promote()
        assert published(api) == [new_kid]
        assert SigningKey.objects.get(kid=old_kid).state == "retired"
        verify_like_aws(api, minted_kid(api, stand_in, web_main_claims)[1], audience=cases.STS_AUDIENCE)


def test_first_rotation_without_keys_signs_at_once(db):
    out = io.StringIO()
    call_command("rotate_signing_key", stdout=out)
    assert "signing now" in out.getvalue()
    assert SigningKey.objects.get().state == "current"
