"""POST /api/v1/credentials: Rolegate mints its token and calls STS AssumeRoleWithWebIdentity.

moto stands in for STS (it does not validate web identity tokens: our code does); STS refusals
are driven with botocore's Stubber on our client module.
"""

from __future__ import annotations

import jwt
import pytest
from botocore.exceptions import ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError
from botocore.stub import Stubber

from exchange import aws_sts
from exchange.models import AuditEvent, UsedToken
from tests.exchange import cases
from tests.exchange.conftest import STS_ANSWER, exchange_params, post_form
from tests.services import free_port

CREDENTIALS = "/api/v1/credentials"


def credentials_params(stand_in, claims, role_arn=cases.DEPLOY_WEB, **extra):
    params = exchange_params(stand_in.mint(stand_in.claims(claims)), role_arn, **extra)
    params.pop("grant_type")  # optional here
    return params


def test_credentials_in_credential_process_format(api, registry, stand_in, web_main_claims, sts):
    response = post_form(api, CREDENTIALS, credentials_params(stand_in, web_main_claims, duration_seconds="900"))
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == {"Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}
    assert body["Version"] == 1
    assert body["AccessKeyId"].startswith("ASIA")
    assert body["Expiration"].endswith("Z")
    event = AuditEvent.objects.get(request_id=response["X-Request-ID"])
    assert (event.outcome, event.endpoint, event.role_session_name) == ("granted", "credentials", "gl-20-302")
    assert event.minted_jti
    for secret in (body["SecretAccessKey"], body["SessionToken"]):
        assert secret not in str(list(AuditEvent.objects.values()))


def test_credentials_with_grant_type_and_json(api, registry, stand_in, web_main_claims, sts):
    import json

    params = exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.DEPLOY_WEB, duration_seconds=3600)
    response = api.post(CREDENTIALS, json.dumps(params), content_type="application/json")
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("duration", ["899", "43201", "abc"])
def test_duration_outside_sts_bounds_is_invalid_request(api, registry, stand_in, web_main_claims, sts, duration):
    response = post_form(api, CREDENTIALS, credentials_params(stand_in, web_main_claims, duration_seconds=duration))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "duration_seconds" in response.json()["error_description"]


def test_duration_above_the_role_maximum(api, registry, stand_in, web_main_claims, sts):
    response = post_form(api, CREDENTIALS, credentials_params(stand_in, web_main_claims, duration_seconds="7200"))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"
    assert AuditEvent.objects.get().reason == "invalid_duration"


def test_same_decision_errors_as_the_token_endpoint(api, registry, stand_in, feature_mr_claims, sts):
    response = post_form(api, CREDENTIALS, credentials_params(stand_in, feature_mr_claims))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"
    assert AuditEvent.objects.get().reason == "no_matching_mapping"


def test_session_name_and_token_sent_to_sts(api, registry, stand_in, web_main_claims, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = aws_sts.client()
    with Stubber(client) as stubber:
        stubber.add_response(
            "assume_role_with_web_identity",
            STS_ANSWER,
            {
                "RoleArn": cases.DEPLOY_WEB,
                "RoleSessionName": "gl-20-302",
                "WebIdentityToken": stubber_any_jwt(),
                "DurationSeconds": 3600,
            },
        )
        response = post_form(api, CREDENTIALS, credentials_params(stand_in, web_main_claims))
        stubber.assert_no_pending_responses()
    assert response.status_code == 200
    assert response.json()["Expiration"] == "2030-01-01T00:00:00Z"


def stubber_any_jwt():
    from botocore.stub import ANY

    return ANY


@pytest.mark.parametrize("code", ["AccessDenied", "InvalidIdentityToken", "ExpiredTokenException"])
def test_sts_refusal_is_invalid_target_with_its_code(api, registry, stand_in, web_main_claims, monkeypatch, code):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with Stubber(aws_sts.client()) as stubber:
        stubber.add_client_error("assume_role_with_web_identity", service_error_code=code, http_status_code=403)
        params = credentials_params(stand_in, web_main_claims)
        response = post_form(api, CREDENTIALS, params)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_target"
    assert code in body["error_description"]
    assert AuditEvent.objects.get().reason == "sts_refused"
    # The refusal did not burn the token: a retry may succeed once the role trusts Rolegate.
    assert not UsedToken.objects.exists()


def assert_sts_unavailable(response):
    assert response.status_code == 503, response.content
    assert response.json()["error"] == "temporarily_unavailable"
    assert int(response["Retry-After"]) > 0
    event = AuditEvent.objects.get()
    assert (event.outcome, event.reason) == ("denied", "sts_unavailable")
    assert not UsedToken.objects.exists()  # the job may retry with the same token


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("Throttling", 400),
        ("ThrottlingException", 400),
        ("TooManyRequestsException", 400),
        ("RequestLimitExceeded", 400),
        ("RequestTimeout", 400),
        ("RequestTimeoutException", 408),
        ("IDPCommunicationError", 400),
        ("InternalFailure", 500),
        ("ServiceUnavailable", 503),
        ("SomethingNew", 502),  # any 5xx, whatever its code
        ("SlowDown", 429),  # any 429
    ],
)
def test_sts_throttling_and_failures_are_temporarily_unavailable(
    api, registry, stand_in, web_main_claims, monkeypatch, code, status
):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with Stubber(aws_sts.client()) as stubber:
        stubber.add_client_error("assume_role_with_web_identity", service_error_code=code, http_status_code=status)
        response = post_form(api, CREDENTIALS, credentials_params(stand_in, web_main_claims))
    assert_sts_unavailable(response)
    assert code in response.json()["error_description"]


@pytest.mark.parametrize("failure", [ReadTimeoutError, ConnectTimeoutError, ConnectionClosedError])
def test_sts_timeouts_are_temporarily_unavailable(api, registry, stand_in, web_main_claims, sts, failure):
    """The failure is raised where botocore sends the request, as urllib3's would be."""

    def fail(**kwargs):
        raise failure(endpoint_url="https://sts.amazonaws.com")

    aws_sts.client().meta.events.register("before-send.sts.AssumeRoleWithWebIdentity", fail)
    response = post_form(api, CREDENTIALS, credentials_params(stand_in, web_main_claims))
    assert_sts_unavailable(response)


@pytest.mark.parametrize("code", ["Throttling", "TooManyRequestsException", "RequestTimeout", "AccessDenied"])
def test_sts_and_the_iam_sync_classify_alike(api, registry, stand_in, web_main_claims, monkeypatch, code):
    """One classification: what the IAM sync retries, the exchange answers with 503."""
    from botocore.exceptions import ClientError

    from mappings.iam import aws_iam

    error = ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": 400}}, "Op")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with Stubber(aws_sts.client()) as stubber:
        stubber.add_client_error("assume_role_with_web_identity", service_error_code=code, http_status_code=400)
        response = post_form(api, CREDENTIALS, credentials_params(stand_in, web_main_claims))
    transient = isinstance(aws_iam.classify(error), aws_iam.AwsTransientError)
    assert response.status_code == (503 if transient else 400)
    assert transient is (code != "AccessDenied")


def test_sts_unreachable_is_503(api, registry, stand_in, web_main_claims, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{free_port()}")
    aws_sts.reset_client()
    response = post_form(api, CREDENTIALS, credentials_params(stand_in, web_main_claims))
    assert_sts_unavailable(response)


def test_the_token_sent_to_sts_verifies_against_our_jwks(api, registry, stand_in, web_main_claims, monkeypatch):
    """What AWS receives is the same minted token the token endpoint returns."""
    from tests.exchange.conftest import verify_like_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    sent = {}
    client = aws_sts.client()

    def capture(params, **kwargs):
        sent.update(params)

    client.meta.events.register("provide-client-params.sts.AssumeRoleWithWebIdentity", capture)
    with Stubber(client) as stubber:
        stubber.add_client_error("assume_role_with_web_identity", service_error_code="AccessDenied")
        post_form(api, CREDENTIALS, credentials_params(stand_in, web_main_claims))
    claims = verify_like_aws(api, sent["WebIdentityToken"], audience=cases.STS_AUDIENCE)
    assert (
        claims["sub"] == f"gitlab-test:project_path:platform/web:ref_type:branch:ref:main:role:{cases.PROD}/deploy-web"
    )
    assert jwt.get_unverified_header(sent["WebIdentityToken"])["alg"] == "RS256"
