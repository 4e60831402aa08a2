"""Well-formed variants of a request that test_request_shapes.py does not send: a content type
with parameters or in another case is still the form (or JSON) the contract names
(docs/api.md#request), and an ID token whose ``aud`` is a list is accepted when one of its values
is an audience of the issuer, refused as ``wrong_audience`` otherwise (docs/api.md#subject-token-checks)."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from exchange.models import AuditEvent
from tests.exchange import cases
from tests.exchange.conftest import exchange_params, post_form

TOKEN = "/api/v1/token"


@pytest.mark.parametrize(
    ("content_type", "encode"),
    [
        ("application/x-www-form-urlencoded; charset=UTF-8", urlencode),
        ("application/x-www-form-urlencoded;charset=utf-8", urlencode),
        ("Application/X-WWW-Form-Urlencoded", urlencode),
        ("application/json; charset=utf-8", json.dumps),
        ("APPLICATION/JSON", json.dumps),
    ],
)
def test_a_content_type_with_parameters_or_in_capitals_is_accepted(
    api, registry, stand_in, web_main_claims, content_type, encode
):
    params = exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.DEPLOY_WEB)
    response = api.generic("POST", TOKEN, encode(params), content_type=content_type)
    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    "aud", [[cases.AUDIENCE], ["https://other.example", cases.AUDIENCE], [cases.AUDIENCE, "https://x.example"]]
)
def test_an_aud_list_holding_an_accepted_audience_is_accepted(api, registry, stand_in, web_main_claims, aud):
    token = stand_in.mint(stand_in.claims(web_main_claims, aud=aud))
    response = post_form(api, TOKEN, exchange_params(token, cases.DEPLOY_WEB))
    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    ("aud", "reason"),
    [
        (["https://other.example"], "wrong_audience"),
        ([cases.AUDIENCE + "/"], "wrong_audience"),
        (cases.AUDIENCE.upper(), "wrong_audience"),
        ([], "missing_claim"),
        ("", "missing_claim"),
    ],
)
def test_an_aud_without_an_accepted_audience_is_refused(api, registry, stand_in, web_main_claims, aud, reason):
    token = stand_in.mint(stand_in.claims(web_main_claims, aud=aud))
    response = post_form(api, TOKEN, exchange_params(token, cases.DEPLOY_WEB))
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_grant"
    assert AuditEvent.objects.get(request_id=response["X-Request-ID"]).reason == reason
