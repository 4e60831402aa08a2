"""Text no database can store (lone surrogates from "\\ud800" escapes) and unusable signing keys:
a clear answer and an audit event, never a 500 (found in review)."""

from __future__ import annotations

import pytest

from exchange import keys
from exchange.models import AuditEvent, SigningKey
from tests.exchange import cases
from tests.exchange.conftest import GRANT, assert_exchange_error, exchange_params, post_form
from tests.exchange.gitlab_stand_in import b64

TOKEN = "/api/v1/token"


def audited(response) -> AuditEvent:
    return AuditEvent.objects.get(request_id=response["X-Request-ID"])


@pytest.mark.parametrize("path", [TOKEN, "/api/v1/credentials"])
def test_a_lone_surrogate_in_the_token_payload_is_audited_escaped(api, db, path):
    token = b64(b'{"alg":"RS256","kid":"x"}') + "." + b64(b'{"iss":"\\ud800","project_path":"a\\udfff"}') + ".c2ln"
    response = post_form(api, path, exchange_params(token))
    assert response.status_code == 400, response.content
    event = audited(response)
    assert event.reason == "unknown_issuer"
    assert event.iss == "\\ud800" and event.project_path == "a\\udfff"


def test_a_lone_surrogate_in_a_json_body_is_invalid_request(api, db):
    body = '{"grant_type": "' + GRANT + '", "subject_token": "a.b.c", "subject_token_type": "\\ud800"}'
    response = api.post(TOKEN, data=body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_request"
    assert audited(response).reason == "invalid_request"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("grant_type=x&subject_token_type=x&subject_token=a.%ED%A0%80.c", "application/x-www-form-urlencoded"),
        ('{"subject_token": "a.\\ud800.c", "subject_token_type": "x"}', "application/json"),
    ],
)
def test_a_lone_surrogate_in_the_subject_token_is_refused_before_validation(api, db, body, content_type):
    """The text fields skip DRF's per-character surrogate check: parse_body is what refuses."""
    response = api.post(TOKEN, data=body, content_type=content_type)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_request"
    assert "Unicode" in response.json()["error_description"] or "encoding" in response.json()["error_description"]
    assert audited(response).reason == "invalid_request"


def test_the_exchange_fields_carry_no_per_character_surrogate_check():
    """Checked on the fields that check requests: those of the view's serializer instance,
    which DRF deep-copied (constructed anew) from the declared ones."""
    from rest_framework.validators import ProhibitSurrogateCharactersValidator

    from exchange import apis

    for api_class in (apis.TokenExchangeApi, apis.CredentialsApi):
        for name, field in apis._checker(api_class.InputSerializer).fields.items():
            assert not any(isinstance(v, ProhibitSurrogateCharactersValidator) for v in field.validators), name


def test_a_signing_key_that_cannot_be_decrypted_is_a_503_with_an_audit_event(
    api, registry, stand_in, web_main_claims, settings
):
    def exchange():
        return post_form(api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.DEPLOY_WEB))

    assert exchange().status_code == 200  # the key is created under the current secret
    old_secret = settings.SECRET_KEY
    settings.SECRET_KEY = "a-rotated-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
    keys.forget_cached_keys()
    response = exchange()
    assert_exchange_error(response, status=503, error="temporarily_unavailable", retry_after="60")
    assert audited(response).reason == "signing_key_unavailable"

    settings.SECRET_KEY_FALLBACKS = [old_secret]  # the old secret listed while rotating
    keys.forget_cached_keys()
    assert exchange().status_code == 200
    assert SigningKey.objects.count() == 1
