"""The HTTP request itself: content types, duplicated/missing/unknown-valued parameters, size,
methods, rate limit, and a property test feeding random bodies and tokens (never a 500, always
exactly one audit event)."""

from __future__ import annotations

import json

import pytest
from django.db.models import Sum
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from exchange.models import AuditEvent
from tests.exchange import cases
from tests.exchange.conftest import GRANT, JWT_TYPE, assert_exchange_error, exchange_params, post_form
from tests.exchange.gitlab_stand_in import b64

TOKEN = "/api/v1/token"
CREDENTIALS = "/api/v1/credentials"


def assert_refused(response, code, reason, status=400):
    """A refusal with its audit event; a 429 says when to retry (within the minute), others don't."""
    if status == 429:
        assert 1 <= int(response["Retry-After"]) <= 60
    retry_after = response["Retry-After"] if status == 429 else None
    body = assert_exchange_error(response, status=status, error=code, retry_after=retry_after)
    event = AuditEvent.objects.get(request_id=response["X-Request-ID"])
    assert (event.outcome, event.reason) == ("denied", reason)
    assert event.detail == body["error_description"]
    return body


@pytest.mark.parametrize("path", [TOKEN, CREDENTIALS])
@pytest.mark.parametrize("content_type", ["text/plain", "multipart/form-data; boundary=x", "application/xml", ""])
def test_wrong_content_type(api, db, path, content_type):
    response = api.generic("POST", path, "grant_type=x", content_type=content_type)
    body = assert_refused(response, "invalid_request", "invalid_request")
    assert "Content-Type" in body["error_description"]


def test_duplicated_form_parameter(api, db):
    pairs = [*exchange_params("a.b.c").items(), ("subject_token", "d.e.f")]
    body = assert_refused(post_form(api, TOKEN, pairs), "invalid_request", "invalid_request")
    assert "'subject_token' is given more than once" in body["error_description"]


def test_duplicated_json_key(api, db):
    raw = json.dumps({"grant_type": GRANT})[:-1] + ', "audience": "a", "audience": "b"}'
    body = assert_refused(api.post(TOKEN, raw, content_type="application/json"), "invalid_request", "invalid_request")
    assert "'audience' is given more than once" in body["error_description"]


def test_body_too_large(api, db):
    params = exchange_params("x" * (70 * 1024))
    body = assert_refused(post_form(api, TOKEN, params), "invalid_request", "invalid_request")
    assert "larger than" in body["error_description"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"subject_token_type": JWT_TYPE, "subject_token": "a.b.c"}, "grant_type"),
        ({"grant_type": GRANT, "subject_token_type": JWT_TYPE}, "subject_token"),
        ({"grant_type": GRANT, "subject_token": "a.b.c"}, "subject_token_type"),
        (
            {**exchange_params("a.b.c"), "subject_token_type": "urn:ietf:params:oauth:token-type:saml2"},
            "subject_token_type",
        ),
        (
            {**exchange_params("a.b.c"), "requested_token_type": "urn:ietf:params:oauth:token-type:access_token"},
            "requested_token_type",
        ),
        ({**exchange_params("a.b.c"), "audience": "deploy-web"}, "audience"),
        ({**exchange_params("a.b.c"), "subject_token": ""}, "subject_token"),
    ],
)
def test_missing_or_unknown_valued_parameters(api, db, params, named):
    body = assert_refused(post_form(api, TOKEN, params), "invalid_request", "invalid_request")
    assert named in body["error_description"]


@pytest.mark.parametrize("raw", ['["a"]', '"text"', "{", '{"grant_type": 1}', '{"subject_token": null}', "\xff"])
def test_json_that_is_not_an_object_of_strings(api, db, raw):
    response = api.post(TOKEN, raw.encode("latin-1"), content_type="application/json")
    assert_refused(response, "invalid_request", "invalid_request")


def test_unsupported_grant_type(api, db):
    params = {**exchange_params("a.b.c"), "grant_type": "client_credentials"}
    assert_refused(post_form(api, TOKEN, params), "unsupported_grant_type", "unsupported_grant_type")


def test_unknown_parameters_are_ignored(api, registry, stand_in, web_main_claims):
    token = stand_in.mint(stand_in.claims(web_main_claims))
    params = {**exchange_params(token, cases.DEPLOY_WEB), "scope": "anything", "resource": "x"}
    assert post_form(api, TOKEN, params).status_code == 200


@pytest.mark.parametrize("path", [TOKEN, CREDENTIALS])
@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
def test_other_methods_are_405_and_audited(api, db, path, method):
    response = api.generic(method, path)
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    if method != "HEAD":  # a HEAD answer has no body
        body = assert_exchange_error(response, status=405, error="invalid_request")
        assert f"Method {method} is not allowed; use POST." == body["error_description"]
    assert (response["Cache-Control"], response["Pragma"]) == ("no-store", "no-cache")
    event = AuditEvent.objects.get(request_id=response["X-Request-ID"])
    assert event.reason == "method_not_allowed"


def test_rate_limit_per_client_ip(api, db, settings):
    settings.ROLEGATE_RATE_LIMIT = 2
    from django.core.cache import cache

    cache.clear()
    for _ in range(2):
        assert post_form(api, TOKEN, exchange_params("a.b.c")).status_code == 400
    response = post_form(api, TOKEN, exchange_params("a.b.c"))
    assert_refused(response, "slow_down", "rate_limited", status=429)
    other = APIClientFrom("10.0.0.9")
    assert post_form(other, TOKEN, exchange_params("a.b.c")).status_code == 400
    cache.clear()


def test_the_rate_limit_comes_before_the_body_is_judged(api, db, settings):
    settings.ROLEGATE_RATE_LIMIT = 1
    from django.core.cache import cache

    cache.clear()
    assert post_form(api, TOKEN, {"grant_type": "x"}).status_code == 400
    response = api.post(TOKEN, data="not a form", content_type="text/plain")
    assert_refused(response, "slow_down", "rate_limited", status=429)
    assert AuditEvent.objects.count() == 2
    cache.clear()


def APIClientFrom(ip):
    from rest_framework.test import APIClient

    return APIClient(REMOTE_ADDR=ip)


def test_a_peer_that_is_not_an_ip_is_audited_without_one(db):
    from rest_framework.test import APIClient

    response = post_form(APIClient(REMOTE_ADDR="unix:/run/gunicorn.sock"), TOKEN, exchange_params("a.b.c"))
    assert response.status_code == 400
    assert AuditEvent.objects.get(request_id=response["X-Request-ID"]).client_ip is None


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
_claims = st.dictionaries(
    st.sampled_from(
        [
            "iss",
            "aud",
            "exp",
            "iat",
            "nbf",
            "jti",
            "sub",
            "project_path",
            "ref",
            "ref_type",
            "ref_protected",
            "project_id",
            "job_id",
            "kid",
            "alg",
        ]
    )
    | st.text(max_size=8),
    _json_values,
    max_size=10,
)
_tokens = st.one_of(
    st.text(max_size=300),
    st.builds(
        lambda header, claims, sig: ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), sig]),
        _claims,
        _claims,
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_0123456789", max_size=50),
    ),
)


@hypothesis_settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from([TOKEN, CREDENTIALS]),
    content_type=st.sampled_from(["application/x-www-form-urlencoded", "application/json", "text/plain"]),
    body=st.one_of(
        st.binary(max_size=300),
        st.dictionaries(
            st.sampled_from(
                [
                    "grant_type",
                    "subject_token",
                    "subject_token_type",
                    "audience",
                    "duration_seconds",
                    "requested_token_type",
                ]
            )
            | st.text(max_size=5),
            st.text(max_size=60) | _tokens,
            max_size=6,
        ).map(lambda d: json.dumps(d).encode()),
        _tokens.map(lambda t: json.dumps(exchange_params(t)).encode()),
        _tokens.map(lambda t: "&".join(f"{k}={v}" for k, v in exchange_params(t).items()).encode()),
    ),
)
def test_random_requests_never_500_and_always_one_audit_event(api, registry, path, content_type, body):
    """Each request is recorded once: its own event when it presented a subject token, one more
    in its client's aggregate event of the minute when it did not (docs/api.md#audit-trail)."""
    before = AuditEvent.objects.aggregate(total=Sum("count"))["total"] or 0
    response = api.generic("POST", path, body, content_type=content_type)
    assert response.status_code in (400, 405, 429), response.content
    assert response.json()["error"]
    assert AuditEvent.objects.aggregate(total=Sum("count"))["total"] == before + 1
    own = AuditEvent.objects.filter(request_id=response["X-Request-ID"], aggregate_key=None).exists()
    presented = _presented_token(body, content_type)
    assert own == presented or (not presented and AuditEvent.objects.filter(aggregate_key__isnull=False).exists())


def _presented_token(body: bytes, content_type: str) -> bool:
    """Whether the exchange could read a subject token from ``body`` (mirrors its parsing)."""
    from exchange.apis import _BadRequest, parse_body

    try:
        params = parse_body(content_type=content_type, content_length=str(len(body)), read=lambda: body)
    except _BadRequest:
        return False
    return bool(params.get("subject_token"))


@pytest.mark.parametrize("accept", ["text/html", "image/png", "application/xml;q=1, */*;q=0"])
def test_the_exchange_answers_json_whatever_the_accept_header(api, registry, stand_in, web_main_claims, accept):
    """RFC 6749 §5.1: the answer is JSON. DRF's negotiation used to refuse these with a 406 before
    the view ran, so with no audit event and the token's fate unrecorded."""
    token = stand_in.mint(stand_in.claims(web_main_claims))
    api.credentials(HTTP_ACCEPT=accept)
    granted = post_form(api, TOKEN, exchange_params(token, cases.DEPLOY_WEB))
    assert granted.status_code == 200, granted.content
    assert granted["Content-Type"] == "application/json"
    assert AuditEvent.objects.get(request_id=granted["X-Request-ID"]).outcome == "granted"
    refused = post_form(api, TOKEN, exchange_params(token, cases.DEPLOY_WEB))
    assert_refused(refused, "invalid_grant", "replay")


def test_a_verified_request_is_given_back_to_the_minute_it_was_counted_in(
    api, registry, stand_in, web_main_claims, settings, monkeypatch
):
    """The client limit's give-back (a verified token within its project's limit) reaches the
    counter it was added to, even when the minute turns during the request."""
    from django.core.cache import cache

    from exchange import services

    settings.ROLEGATE_RATE_LIMIT = 5
    settings.ROLEGATE_PROJECT_RATE_LIMIT = 100
    cache.clear()
    calls: list[int] = []

    def window() -> int:  # the client is counted in minute 1000; everything after is minute 1001
        calls.append(1)
        return 1000 if len(calls) == 1 else 1001

    monkeypatch.setattr(services, "_window", window)
    cache.set(f"rolegate:rate:{services.client_bucket('127.0.0.1')}:1001", 3, timeout=61)  # the next minute's
    response = post_form(api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.DEPLOY_WEB))
    assert response.status_code == 200, response.content
    bucket = services.client_bucket("127.0.0.1")
    assert cache.get(f"rolegate:rate:{bucket}:1000") == 0  # counted, then given back
    assert cache.get(f"rolegate:rate:{bucket}:1001") == 3  # untouched
    cache.clear()


# --- the view's own short path ---------------------------------------------------------------

_NAMES = ("grant_type", "subject_token", "subject_token_type", "audience", "requested_token_type", "duration_seconds")
_VALUES = st.one_of(
    st.sampled_from([GRANT, JWT_TYPE, "urn:ietf:params:oauth:token-type:id_token", cases.DEPLOY_WEB, "900", "", " "]),
    st.text(max_size=40),
    st.from_regex(r"\A-?[0-9]{1,6}\Z"),
)


@hypothesis_settings(max_examples=300, deadline=None)
@given(params=st.dictionaries(st.one_of(st.sampled_from(_NAMES), st.text(max_size=10)), _VALUES, max_size=8))
def test_the_views_field_checks_decide_as_a_serializer_would(params):
    """The view checks a request with one serializer instance per process (no per-request field
    deep copy); for any parameters it decides what ``InputSerializer(data=...).is_valid()``
    decides, to the words of each error."""
    from exchange.apis import CredentialsApi, TokenExchangeApi, validate

    for api_class in (TokenExchangeApi, CredentialsApi):
        serializer = api_class.InputSerializer(data=params)
        valid = serializer.is_valid()
        data, errors = validate(api_class.InputSerializer, params)
        if valid:
            assert (data, errors) == (dict(serializer.validated_data), None)
        else:
            assert data == {}
            assert errors == serializer.errors


def test_an_exchange_builds_no_serializer(api, registry, stand_in, web_main_claims, monkeypatch):
    """Building a DRF serializer deep-copies all of its fields; the exchange checks requests
    with one instance per process, built on the first request."""
    from rest_framework import serializers

    warm = post_form(api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.DEPLOY_WEB))
    assert warm.status_code == 200

    def refuse(*args, **kwargs):
        raise AssertionError("a serializer was built for this request")

    monkeypatch.setattr(serializers.Serializer, "__init__", refuse)
    token = stand_in.mint(stand_in.claims(web_main_claims))
    response = post_form(api, TOKEN, exchange_params(token, cases.DEPLOY_WEB))
    assert response.status_code == 200, response.content
    refused = post_form(api, TOKEN, {"subject_token": "a.b.c"})
    assert refused.status_code == 400 and "grant_type" in refused.json()["error_description"]
