"""docs/api.md against a live server: discovery, JWKS, the token exchange and credentials."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import jwt
import pytest
import requests

from tests.contract.conftest import (
    DEPLOY_WEB,
    GRANT,
    JWKS_REFRESH_SECONDS,
    JWT_TYPE,
    LEGACY_DEPLOY,
    PROD,
    READONLY,
    get,
)
from tests.exchange.gitlab_stand_in import GitLabKey

DISCOVERY_FIELDS = {
    "issuer",
    "jwks_uri",
    "token_endpoint",
    "response_types_supported",
    "subject_types_supported",
    "id_token_signing_alg_values_supported",
    "claims_supported",
    "grant_types_supported",
}
SOURCE_CLAIMS = (
    "project_path",
    "project_id",
    "namespace_path",
    "ref",
    "ref_type",
    "ref_protected",
    "pipeline_source",
    "pipeline_id",
    "job_id",
    "user_login",
)


def audited(live, request_id: str) -> dict:
    page = live.api("GET", f"/api/v1/audit-events/?request_id={request_id}", live.staff_token).json()
    (event,) = page["results"]
    return event


def test_discovery_names_the_issuer_and_every_required_field(live):
    response = get(live, "/.well-known/openid-configuration")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
    body = response.json()
    assert body.keys() >= DISCOVERY_FIELDS
    assert body["issuer"] == live.env["ROLEGATE_ISSUER"]
    assert body["jwks_uri"] == f"{live.url}/.well-known/jwks.json"
    assert body["token_endpoint"] == f"{live.url}/api/v1/token"
    assert "urn:ietf:params:oauth:grant-type:token-exchange" in body["grant_types_supported"]
    assert body["id_token_signing_alg_values_supported"] == ["RS256"]


def test_jwks_lists_public_signing_keys_only(live):
    response = get(live, "/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["X-Request-ID"]
    keys = response.json()["keys"]
    assert keys
    for key in keys:
        assert {"kid", "kty", "alg", "use"} <= key.keys()
        assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig")
        assert not {"d", "p", "q", "dp", "dq", "qi"} & key.keys()


def test_a_granted_exchange_mints_the_promised_token(live, web_main_claims):
    source = live.gitlab.claims(web_main_claims)
    response = live.exchange("/api/v1/token", live.gitlab.mint(source), DEPLOY_WEB)

    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body.keys() == {
        "access_token",
        "issued_token_type",
        "token_type",
        "expires_in",
        "role_arn",
        "role_session_name",
    }
    assert body["issued_token_type"] == JWT_TYPE and body["token_type"] == "N_A"
    assert body["role_arn"] == DEPLOY_WEB
    assert body["role_session_name"] == f"gl-{source['project_id']}-{source['job_id']}"
    assert isinstance(body["expires_in"], int) and 0 < body["expires_in"] <= 300

    # Verified the way STS does: discovery -> jwks_uri -> the key by kid -> RS256.
    jwks = requests.get(get(live, "/.well-known/openid-configuration").json()["jwks_uri"], timeout=10).json()
    header = jwt.get_unverified_header(body["access_token"])
    (key,) = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    assert header["alg"] == "RS256"
    claims = jwt.decode(
        body["access_token"],
        key=jwt.PyJWK(key).key,
        algorithms=["RS256"],
        audience="sts.amazonaws.com",
        issuer=live.env["ROLEGATE_ISSUER"],
    )
    assert claims["aud"] == "sts.amazonaws.com"
    # The contract fixes the beginning; the role the token is for ends it (docs/api.md).
    assert claims["sub"] == f"gitlab-live:project_path:platform/web:ref_type:branch:ref:main:role:{PROD}/deploy-web"
    for name in ("iat", "nbf", "exp"):
        assert type(claims[name]) is int
    assert 0 < claims["exp"] - claims["iat"] <= 300
    assert claims["jti"] and claims["jti"] != source["jti"]
    for name in SOURCE_CLAIMS:
        assert claims[name] == source[name] and type(claims[name]) is type(source[name]), name
    assert "environment" not in claims  # absent in the source token
    assert claims["rolegate_mapping"] == "web-main-deploy"
    tags = claims["https://aws.amazon.com/tags"]
    promised = {
        "project_path": ["platform/web"],
        "namespace_path": ["platform"],
        "ref": ["main"],
        "ref_type": ["branch"],
        "ref_protected": ["true"],
        "pipeline_source": ["push"],
        "mapping": ["web-main-deploy"],
    }
    # The promised tags, plus the documented ones for the mapping conditions (docs/api.md, "Session
    # tags"), each the source claim's exact value.
    assert {key: tags["principal_tags"].get(key) for key in promised} == promised
    extra = {key: value for key, value in tags["principal_tags"].items() if key not in promised}
    assert set(extra) <= {
        "project_id",
        "namespace_id",
        "ci_config_ref_uri",
        "environment_protected",
        "deployment_tier",
        "runner_environment",
    }
    assert extra == {key: [source[key]] for key in extra}
    assert isinstance(tags["transitive_tag_keys"], list)

    event = audited(live, response.headers["X-Request-ID"])
    assert (event["outcome"], event["reason"], event["minted_jti"]) == ("granted", "granted", claims["jti"])


def test_a_role_without_session_tags_gets_no_tags_claim(live, web_main_claims):
    response = live.exchange("/api/v1/token", live.token(web_main_claims), READONLY)
    assert response.status_code == 200, response.text
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert "https://aws.amazon.com/tags" not in claims


def test_a_json_body_is_accepted(live, web_main_claims):
    data = {
        "grant_type": GRANT,
        "subject_token": live.token(web_main_claims),
        "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
        "audience": DEPLOY_WEB,
    }
    response = requests.post(f"{live.url}/api/v1/token", json=data, timeout=20)
    assert response.status_code == 200, response.text


def assert_oauth_error(live, response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body.keys() == {"error", "error_description", "request_id"}
    assert body["error"] == code
    assert isinstance(body["error_description"], str) and len(body["error_description"]) > 10
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


@pytest.mark.parametrize("path", ["/api/v1/token", "/api/v1/credentials"])
def test_errors_are_oauth_bodies_whose_request_id_is_the_audit_events(live, path, web_main_claims):
    cases = [
        ({"grant_type": GRANT, "subject_token_type": JWT_TYPE}, "invalid_request", "invalid_request"),
        (
            {"grant_type": "client_credentials", "subject_token": "x", "subject_token_type": JWT_TYPE},
            "unsupported_grant_type",
            None,
        ),
        ({"grant_type": GRANT, "subject_token": "not-a-jwt", "subject_token_type": JWT_TYPE}, "invalid_grant", None),
    ]
    if path == "/api/v1/credentials":
        cases.pop(1)  # grant_type is optional there; a wrong one is still a wrong one, but not asked here
    for data, code, reason in cases:
        response = requests.post(f"{live.url}{path}", data=data, timeout=20)
        body = assert_oauth_error(live, response, 400, code)
        event = audited(live, body["request_id"])
        assert event["outcome"] == "denied"
        if reason:
            assert event["reason"] == reason

    response = live.exchange(path, live.token(web_main_claims), LEGACY_DEPLOY)
    assert_oauth_error(live, response, 400, "invalid_target")


@pytest.mark.parametrize("path", ["/api/v1/token", "/api/v1/credentials"])
def test_other_methods_are_405_with_a_request_id(live, path):
    for method in ("GET", "PUT", "DELETE"):
        response = requests.request(method, f"{live.url}{path}", timeout=20)
        assert response.status_code == 405
        assert response.headers["X-Request-ID"]


def test_wrong_content_type_and_duplicated_parameters_are_invalid_request(live, web_main_claims):
    token = live.token(web_main_claims)
    response = requests.post(
        f"{live.url}/api/v1/token",
        data=f"grant_type={GRANT}&subject_token={token}",
        headers={"Content-Type": "text/plain"},
        timeout=20,
    )
    assert_oauth_error(live, response, 400, "invalid_request")
    pairs = [
        ("grant_type", GRANT),
        ("subject_token", token),
        ("subject_token_type", JWT_TYPE),
        ("audience", DEPLOY_WEB),
        ("audience", READONLY),
    ]
    response = requests.post(f"{live.url}/api/v1/token", data=pairs, timeout=20)
    assert_oauth_error(live, response, 400, "invalid_request")


def test_a_body_too_large_is_invalid_request(live):
    data = {"grant_type": GRANT, "subject_token": "a" * 3_000_000, "subject_token_type": JWT_TYPE}
    response = requests.post(f"{live.url}/api/v1/token", data=data, timeout=20)
    assert_oauth_error(live, response, 400, "invalid_request")


def test_a_sub_longer_than_255_characters_is_invalid_target(live, web_main_claims):
    project = "long/" + "p" * 250
    token = live.token(web_main_claims, project_path=project, namespace_path="long")
    response = live.exchange("/api/v1/token", token, READONLY)
    body = assert_oauth_error(live, response, 400, "invalid_target")
    assert "255" in body["error_description"]


def test_a_replayed_token_is_invalid_grant(live, web_main_claims):
    token = live.token(web_main_claims)
    assert live.exchange("/api/v1/token", token, DEPLOY_WEB).status_code == 200
    body = assert_oauth_error(live, live.exchange("/api/v1/token", token, DEPLOY_WEB), 400, "invalid_grant")
    assert audited(live, body["request_id"])["reason"] == "replay"
    assert live.exchange("/api/v1/token", token, READONLY).status_code == 200  # once per role


def test_credentials_are_in_credential_process_format(live, web_main_claims):
    source = live.gitlab.claims(web_main_claims)
    response = live.exchange("/api/v1/credentials", live.gitlab.mint(source), DEPLOY_WEB, duration_seconds="900")
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body.keys() == {"Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}
    assert body["Version"] == 1
    expiration = datetime.fromisoformat(body["Expiration"].replace("Z", "+00:00"))
    # The session asked for: duration_seconds=900 from now (STS's clock, give or take a minute).
    assert 840 <= (expiration - datetime.now(UTC)).total_seconds() <= 960, body["Expiration"]
    event = audited(live, response.headers["X-Request-ID"])
    assert event["role_session_name"] == f"gl-{source['project_id']}-{source['job_id']}"
    assert re.fullmatch(r"[\w+=,.@-]{2,64}", event["role_session_name"], re.ASCII)  # STS's \w is ASCII


def test_credentials_refuse_a_duration_outside_the_role_bounds(live, web_main_claims):
    """Below STS's 900 seconds the parameter itself is wrong; above the role's maximum (deploy-web:
    3600) the token is fine but the role is not granted for that long (docs/api.md#errors)."""
    response = live.exchange("/api/v1/credentials", live.token(web_main_claims), DEPLOY_WEB, duration_seconds="899")
    assert "duration_seconds" in assert_oauth_error(live, response, 400, "invalid_request")["error_description"]
    response = live.exchange("/api/v1/credentials", live.token(web_main_claims), DEPLOY_WEB, duration_seconds="3601")
    assert "3600" in assert_oauth_error(live, response, 400, "invalid_target")["error_description"]
    assert audited(live, response.headers["X-Request-ID"])["reason"] == "invalid_duration"


def test_audience_may_be_left_out_when_exactly_one_role_matches(live, web_main_claims):
    token = live.token(web_main_claims, project_path="long/x", namespace_path="long")
    response = live.exchange("/api/v1/token", token)
    assert response.status_code == 200, response.text
    assert response.json()["role_arn"] == READONLY

    several = live.exchange("/api/v1/token", live.token(web_main_claims))
    assert_oauth_error(live, several, 400, "invalid_target")


def test_a_star_covers_subgroups(live, web_main_claims):
    token = live.token(web_main_claims, project_path="platform/team/deep/api", namespace_path="platform/team/deep")
    assert live.exchange("/api/v1/token", token, READONLY).status_code == 200


def test_unknown_parameter_values_are_invalid_request(live, web_main_claims):
    for extra in (
        {"subject_token_type": "urn:ietf:params:oauth:token-type:saml2"},
        {"requested_token_type": "urn:ietf:params:oauth:token-type:access_token"},
    ):
        response = live.exchange("/api/v1/token", live.token(web_main_claims), DEPLOY_WEB, **extra)
        assert_oauth_error(live, response, 400, "invalid_request")


def test_environment_is_copied_and_tag_values_are_exact_or_absent(live, web_main_claims):
    """A claim value AWS's tag character set cannot hold exactly gets no tag: a rewritten
    stand-in could equal another job's value (docs/trust-model.md)."""
    for environment, tagged in (("review/ü 1", True), ("review/ü#1 *x", False), ("review\t1", False)):
        token = live.token(web_main_claims, environment=environment)
        response = live.exchange("/api/v1/token", token, DEPLOY_WEB)
        assert response.status_code == 200, response.text
        claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
        assert claims["environment"] == environment
        tags = claims["https://aws.amazon.com/tags"]
        assert tags["principal_tags"].get("environment") == ([environment] if tagged else None)
        assert ("environment" in tags["transitive_tag_keys"]) is tagged
        for key, values in tags["principal_tags"].items():
            assert len(values) == 1 and re.fullmatch(r"[\w .:/=+\-@]{0,256}", values[0]), key


def test_a_newly_published_gitlab_key_is_accepted_and_unknown_issuers_are_never_fetched(live, web_main_claims):
    gitlab = live.gitlab
    new_key = GitLabKey()
    gitlab.published = [gitlab.primary, new_key]
    try:
        # Within the refresh interval (ROLEGATE_JWKS_MIN_REFRESH_SECONDS, 30 s in production and
        # JWKS_REFRESH_SECONDS here): a refresh may have happened just before. The margin covers
        # a loaded machine, not a longer interval.
        started = time.monotonic()
        while True:
            token = gitlab.mint(gitlab.claims(web_main_claims), key=new_key)
            response = live.exchange("/api/v1/token", token, DEPLOY_WEB)
            if response.status_code == 200 or time.monotonic() > started + JWKS_REFRESH_SECONDS + 8:
                break
            assert audited(live, response.headers["X-Request-ID"])["reason"] == "unknown_kid"
            time.sleep(0.25)
        assert response.status_code == 200, response.text

        gitlab.hits.clear()
        stranger = gitlab.mint(gitlab.claims(web_main_claims, iss=f"{gitlab.url}/elsewhere"))
        response = live.exchange("/api/v1/token", stranger, DEPLOY_WEB)
        assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
        assert not any(path.startswith("/elsewhere") for path in gitlab.hits)
    finally:
        gitlab.published = [gitlab.primary]


def test_the_issuer_endpoints_answer_head_like_get_and_refuse_writes(live):
    for path in ("/.well-known/openid-configuration", "/.well-known/jwks.json"):
        head = requests.head(f"{live.url}{path}", timeout=20)
        assert head.status_code == 200 and head.headers["Content-Type"] == "application/json"
        for method in ("POST", "PUT", "DELETE"):
            refused = requests.request(method, f"{live.url}{path}", timeout=20)
            assert refused.status_code == 405 and refused.headers["X-Request-ID"]


def test_grant_type_is_optional_for_credentials(live, web_main_claims):
    data = {"subject_token": live.token(web_main_claims), "subject_token_type": JWT_TYPE, "audience": DEPLOY_WEB}
    response = requests.post(f"{live.url}/api/v1/credentials", data=data, timeout=20)
    assert response.status_code == 200, response.text
    assert response.json()["Version"] == 1


# An account of its own (so the other tests' accounts and roles stay as their file says), with a
# role whose mapping is bound on GitLab's ids, written through the registry services like the admin.
BOUND_ACCOUNT = "444444444444"
WEB_BOUND = f"arn:aws:iam::{BOUND_ACCOUNT}:role/deploy-web-bound"
BIND = f"""
from mappings import services
from mappings.models import Account, Issuer
if not Account.objects.filter(name="ids").exists():
    account = services.account_create(actor="contract tests", name="ids", account_id="{BOUND_ACCOUNT}")
    role = services.role_create(actor="contract tests", account=account, name="deploy-web-bound")
    services.mapping_create(
        actor="contract tests", name="web-main-bound", issuer=Issuer.objects.get(), role=role,
        project="platform/web", project_id="20", namespace_id="72", ref="main", protected=True,
    )
"""


def test_a_mapping_bound_on_ids_refuses_a_project_re_created_at_its_path(live, web_main_claims):
    """web-main-bound names platform/web and project 20 in namespace 72. The same path as another
    project (99), or in a reclaimed namespace (73), is refused; the minted token of project 20
    carries both ids as session tags, which the role's trust policy requires."""
    done = live.manage("shell", "-c", BIND)
    assert done.returncode == 0, done.stderr
    response = live.exchange("/api/v1/token", live.token(web_main_claims), WEB_BOUND)
    assert response.status_code == 200, response.text
    minted = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    tags = minted["https://aws.amazon.com/tags"]["principal_tags"]
    assert (tags["project_id"], tags["namespace_id"]) == (["20"], ["72"])
    assert (minted["project_id"], minted["namespace_id"]) == ("20", "72")

    for overrides in ({"project_id": "99"}, {"namespace_id": "73"}):
        refused = live.exchange("/api/v1/token", live.token(web_main_claims, **overrides), WEB_BOUND)
        body = assert_oauth_error(live, refused, 400, "invalid_target")
        event = audited(live, body["request_id"])
        assert event["reason"] == "no_matching_mapping"
        explained = live.api(
            "POST",
            "/api/v1/explain",
            live.staff_token,
            json={"issuer": event["issuer"], "claims": {**web_main_claims, **overrides}, "role_arn": WEB_BOUND},
        ).json()
        [evaluation] = [m for m in explained["mappings"] if m["name"] == "web-main-bound"]
        [(field, value)] = overrides.items()
        assert evaluation["failed"] == [{"field": field, "pattern": web_main_claims[field], "value": value}]
    # A number where GitLab sends a string of digits is refused before any mapping is looked at.
    wrong = live.exchange("/api/v1/token", live.token(web_main_claims, namespace_id=72), WEB_BOUND)
    assert "namespace_id" in assert_oauth_error(live, wrong, 400, "invalid_grant")["error_description"]
