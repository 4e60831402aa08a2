"""docs/api.md#oidc-discovery-and-jwks, the parts test_signing_keys.py leaves open: the discovery
document names ``ROLEGATE_ISSUER`` whatever it is set to and whatever ``Host`` a request names
(AWS trusts what it says: a ``jwks_uri`` built from the request would let a client point it
elsewhere), minted tokens carry the same ``iss``; and during a rotation every listed key -- next,
current, previous -- is a public key with ``kid``, ``kty``, ``alg`` and ``use: "sig"`` that
verifies the tokens signed with it."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import time_machine
from django.core.management import call_command

from exchange.models import SigningKey
from tests.exchange import cases
from tests.exchange.conftest import exchange_params, post_form

TOKEN = "/api/v1/token"
PRIVATE_PARTS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


@pytest.mark.parametrize("issuer", ["https://rolegate.example.org", "https://sts-broker.example.net:8443/rolegate"])
def test_discovery_and_minted_tokens_name_the_configured_issuer(
    api, registry, stand_in, web_main_claims, settings, issuer
):
    settings.ROLEGATE_ISSUER = issuer
    document = api.get("/.well-known/openid-configuration").json()
    assert document["issuer"] == issuer
    assert document["jwks_uri"] == f"{issuer}/.well-known/jwks.json"
    assert document["token_endpoint"] == f"{issuer}/api/v1/token"

    response = post_form(api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.DEPLOY_WEB))
    assert response.status_code == 200, response.content
    assert jwt.decode(response.json()["access_token"], options={"verify_signature": False})["iss"] == issuer


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1:8000", "testserver"])
def test_the_request_host_never_changes_the_discovery_document(api, db, settings, host):
    settings.ROLEGATE_ISSUER = "https://rolegate.example.com"
    document = api.get("/.well-known/openid-configuration", HTTP_HOST=host, HTTP_X_FORWARDED_HOST="evil.example").json()
    assert (document["issuer"], document["jwks_uri"], document["token_endpoint"]) == (
        "https://rolegate.example.com",
        "https://rolegate.example.com/.well-known/jwks.json",
        "https://rolegate.example.com/api/v1/token",
    )


def published(api) -> dict[str, dict]:
    response = api.get("/.well-known/jwks.json")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    keys = response.json()["keys"]
    for key in keys:
        assert {"kid", "kty", "alg", "use"} <= key.keys()
        assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig")
        assert not PRIVATE_PARTS & key.keys(), key["kid"]
    return {key["kid"]: key for key in keys}


def minted(api, stand_in, claims) -> str:
    response = post_form(api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(claims)), cases.DEPLOY_WEB))
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


def verifies(token: str, jwks: dict[str, dict]) -> bool:
    key = jwks[jwt.get_unverified_header(token)["kid"]]
    jwt.decode(token, key=jwt.PyJWK(key).key, algorithms=["RS256"], audience=cases.STS_AUDIENCE)
    return True


def test_every_key_listed_during_a_rotation_is_public_and_verifies_its_tokens(
    api, registry, stand_in, web_main_claims, settings
):
    settings.ROLEGATE_KEY_OVERLAP = 600
    with time_machine.travel(datetime.now(UTC), tick=False) as clock:
        before = minted(api, stand_in, web_main_claims)
        call_command("rotate_signing_key", stdout=io.StringIO())
        during = published(api)
        assert len(during) == 2  # current and next
        assert verifies(before, during)

        clock.shift(timedelta(seconds=590))
        late = minted(api, stand_in, web_main_claims)  # the last minutes of the old key
        clock.shift(timedelta(seconds=10))
        after = minted(api, stand_in, web_main_claims)
        jwks = published(api)
        assert set(jwks) == set(during)  # now current and previous
        assert jwt.get_unverified_header(late)["kid"] == jwt.get_unverified_header(before)["kid"]
        assert jwt.get_unverified_header(after)["kid"] != jwt.get_unverified_header(before)["kid"]
        assert verifies(late, jwks) and verifies(after, jwks)
        states = set(SigningKey.objects.values_list("state", flat=True))
        assert states == {"current", "previous"}
