"""POST /api/v1/token: the happy path, verified the way AWS verifies, and the decision table."""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from exchange.models import AuditEvent, UsedToken
from tests.exchange import cases
from tests.exchange.conftest import exchange_params, post_form, verify_like_aws

TOKEN = "/api/v1/token"


def test_web_main_gets_a_token_aws_accepts(api, registry, stand_in, web_main_claims):
    claims = stand_in.claims(web_main_claims)
    response = post_form(api, TOKEN, exchange_params(stand_in.mint(claims), cases.DEPLOY_WEB))

    assert response.status_code == 200, response.content
    body = response.json()
    assert response["Cache-Control"] == "no-store"
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:jwt"
    assert body["token_type"] == "N_A"
    assert body["role_arn"] == cases.DEPLOY_WEB
    assert body["role_session_name"] == "gl-20-302"
    assert 0 < body["expires_in"] <= 300

    minted = verify_like_aws(api, body["access_token"], audience=cases.STS_AUDIENCE)
    assert minted["iss"] == settings.ROLEGATE_ISSUER
    assert minted["aud"] == "sts.amazonaws.com"
    assert (
        minted["sub"] == f"gitlab-test:project_path:platform/web:ref_type:branch:ref:main:role:{cases.PROD}/deploy-web"
    )
    assert minted["exp"] - minted["iat"] == settings.ROLEGATE_TOKEN_LIFETIME <= 300
    assert minted["nbf"] == minted["iat"]
    assert minted["jti"] != claims["jti"]
    for name in (
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
        "ci_config_ref_uri",
        "runner_environment",
        "namespace_id",
    ):
        assert minted[name] == claims[name]
    assert "environment" not in minted
    assert "environment_protected" not in minted and "deployment_tier" not in minted
    assert "https://aws.amazon.com/source_identity" not in minted  # account prod has not opted in
    assert minted["rolegate_mapping"] == "web-main-deploy"
    tags = minted["https://aws.amazon.com/tags"]
    assert tags["principal_tags"] == {
        "project_path": ["platform/web"],
        "project_id": ["20"],
        "namespace_path": ["platform"],
        "ref": ["main"],
        "ref_type": ["branch"],
        "ref_protected": ["true"],
        "pipeline_source": ["push"],
        "ci_config_ref_uri": ["gitlab.example.com/platform/web//.gitlab-ci.yml@refs/heads/main"],
        "runner_environment": ["gitlab-hosted"],
        "namespace_id": ["72"],
        "mapping": ["web-main-deploy"],
    }
    assert tags["transitive_tag_keys"] == sorted(tags["principal_tags"])

    event = AuditEvent.objects.get()
    assert response["X-Request-ID"] == event.request_id
    assert (event.outcome, event.reason, event.endpoint) == ("granted", "granted", "token")
    assert event.token_verified
    assert event.issuer == "gitlab-test"
    assert event.iss == stand_in.url
    assert event.jti == claims["jti"]
    assert event.minted_jti == minted["jti"]
    assert event.role_arn == event.requested_role_arn == cases.DEPLOY_WEB
    assert event.mapping == "web-main-deploy"
    assert event.role_session_name == "gl-20-302"
    assert (event.project_path, event.ref, event.job_id, event.user_login) == ("platform/web", "main", "302", "alice")
    assert event.latency_ms is not None and event.latency_ms >= 0
    assert event.client_ip == "127.0.0.1"
    assert UsedToken.objects.filter(jti=claims["jti"], role_arn=cases.DEPLOY_WEB).count() == 1


def test_environment_is_copied_and_tagged_and_role_without_session_tags(
    api, registry, stand_in, api_production_claims, release_tag_claims
):
    claims = stand_in.claims(api_production_claims)
    response = post_form(api, TOKEN, exchange_params(stand_in.mint(claims), cases.DEPLOY_API))
    assert response.status_code == 200, response.content
    minted = verify_like_aws(api, response.json()["access_token"], audience=cases.STS_AUDIENCE)
    assert minted["environment"] == "production"
    assert minted["https://aws.amazon.com/tags"]["principal_tags"]["environment"] == ["production"]

    release = stand_in.claims(release_tag_claims)
    untagged = post_form(api, TOKEN, exchange_params(stand_in.mint(release), cases.RELEASE_WEB))
    assert untagged.status_code == 200, untagged.content
    minted = verify_like_aws(api, untagged.json()["access_token"], audience=cases.STS_AUDIENCE)
    assert "https://aws.amazon.com/tags" not in minted  # release-web has session_tags off


def test_json_body_is_accepted(api, registry, stand_in, web_main_claims):
    token = stand_in.mint(stand_in.claims(web_main_claims))
    response = api.post(
        TOKEN, data=json.dumps(exchange_params(token, cases.DEPLOY_WEB)), content_type="application/json"
    )
    assert response.status_code == 200, response.content


def test_id_token_subject_type_and_explicit_requested_type(api, registry, stand_in, web_main_claims):
    token = stand_in.mint(stand_in.claims(web_main_claims))
    params = exchange_params(
        token,
        cases.DEPLOY_WEB,
        subject_token_type="urn:ietf:params:oauth:token-type:id_token",
        requested_token_type="urn:ietf:params:oauth:token-type:jwt",
    )
    assert post_form(api, TOKEN, params).status_code == 200


@pytest.mark.parametrize(("name", "claims", "role_arn", "expected"), cases.CASES, ids=[c[0] for c in cases.CASES])
def test_decision_cases(api, registry, stand_in, name, claims, role_arn, expected):
    token = stand_in.mint(stand_in.claims(claims))
    response = post_form(api, TOKEN, exchange_params(token, role_arn))
    event = AuditEvent.objects.get()
    assert event.reason == expected, event.detail
    if expected == "granted":
        assert response.status_code == 200
        assert event.outcome == "granted"
    else:
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_target"
        assert response.json()["request_id"] == event.request_id
        assert event.outcome == "denied"
        assert event.token_verified


def test_a_sub_longer_than_255_characters_is_refused(api, db, stand_in, web_main_claims):
    from mappings import services

    issuer = cases.build_registry(stand_in.url)
    long_project = "platform/" + "x" * 240
    role = services.role_create(actor="t", account=issuer.mappings.first().role.account, name="long")
    services.mapping_create(actor="t", name="long-project", issuer=issuer, role=role, project="platform/x*")
    claims = stand_in.claims(web_main_claims, project_path=long_project)
    response = post_form(api, TOKEN, exchange_params(stand_in.mint(claims), role.arn))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"
    assert "255" in response.json()["error_description"]
    assert AuditEvent.objects.get().reason == "sub_too_long"


def test_a_conditioned_claim_no_session_tag_can_carry_is_refused_and_audited(api, db, stand_in, api_production_claims):
    """The token would carry no environment tag, so IAM would refuse it: claim_not_taggable,
    before anything is minted (docs/reasons.md)."""
    from mappings import services

    issuer = cases.build_registry(stand_in.url)
    role = services.role_create(actor="t", account=issuer.mappings.first().role.account, name="review")
    services.mapping_create(
        actor="t", name="review-apps", issuer=issuer, role=role, project="platform/*", environment="review/*"
    )
    claims = stand_in.claims(api_production_claims, environment="review/a{b}")
    response = post_form(api, TOKEN, exchange_params(stand_in.mint(claims), role.arn))
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_target"
    assert "'review-apps'" in body["error_description"] and "session tag" in body["error_description"]
    event = AuditEvent.objects.get()
    assert (event.outcome, event.reason, event.detail) == ("denied", "claim_not_taggable", body["error_description"])
    assert event.minted_jti is None and not UsedToken.objects.exists()
    # Exactly representable: granted, the tag carries the value as it is.
    claims = stand_in.claims(api_production_claims, environment="review/a b")
    response = post_form(api, TOKEN, exchange_params(stand_in.mint(claims), role.arn))
    assert response.status_code == 200, response.content
    minted = verify_like_aws(api, response.json()["access_token"], audience=cases.STS_AUDIENCE)
    assert minted["https://aws.amazon.com/tags"]["principal_tags"]["environment"] == ["review/a b"]
    assert minted["sub"].endswith(f":role:{cases.PROD}/review")


def test_request_id_header_on_every_response(api, db):
    for response in (api.get("/.well-known/jwks.json"), api.get(TOKEN), api.get("/healthz")):
        assert len(response["X-Request-ID"]) == 32


def test_a_new_issuer_is_seen_by_a_running_process(api, db, stand_in, web_main_claims):
    """Issuers are cached per registry snapshot: registering one through the services is seen
    on the next request, without a restart."""
    from mappings import services
    from tests.exchange.cases import AUDIENCE

    token = stand_in.mint(stand_in.claims(web_main_claims))
    assert post_form(api, TOKEN, exchange_params(token, cases.DEPLOY_WEB)).json()["error"] == "invalid_grant"
    assert AuditEvent.objects.get().reason == "unknown_issuer"
    services.issuer_create(actor="t", name="late", url=stand_in.url, audiences=[AUDIENCE])
    response = post_form(api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(web_main_claims))))
    assert AuditEvent.objects.get(request_id=response["X-Request-ID"]).reason == "no_matching_mapping"


def test_an_issuer_change_is_seen_on_the_next_request(api, registry, stand_in, web_main_claims):
    """The issuers' plain values live in the registry snapshot: an audience removed through the
    services is refused on the very next request, and the snapshot is not reread meanwhile."""
    from mappings import selectors, services
    from mappings.models import Issuer

    first = post_form(api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.DEPLOY_WEB))
    assert first.status_code == 200
    snapshot = selectors.registry()
    assert post_form(api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.READONLY))
    assert selectors.registry() is snapshot
    services.registry_update(Issuer.objects.get(), actor="t", audiences=["https://elsewhere.example.com"])
    response = post_form(api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.DEPLOY_WEB))
    assert response.status_code == 400
    assert AuditEvent.objects.get(request_id=response["X-Request-ID"]).reason == "wrong_audience"
