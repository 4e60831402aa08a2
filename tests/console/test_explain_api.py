"""POST /api/v1/explain: the exchange's matcher on claims as given, with every candidate mapping."""

from __future__ import annotations

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from mappings import services
from mappings.matching import decide
from mappings.models import Mapping
from mappings.selectors import registry
from tests.factories import RoleFactory, web_main_deploy

pytestmark = pytest.mark.django_db
URL = "/api/v1/explain"


@pytest.fixture
def web_registry(db):
    """gitlab-example: web-main-deploy (platform/web main, protected) -> prod/deploy-web,
    api-production (platform/api, environment production) -> prod/deploy-api."""
    web_mapping = web_main_deploy()
    web = web_mapping.role
    api_role = RoleFactory(account=web.account, name="deploy-api")
    services.mapping_create(
        actor="test",
        name="api-production",
        issuer=web_mapping.issuer,
        role=api_role,
        project="platform/api",
        ref="*",
        environment="production",
    )
    return {"web": web.arn, "api": api_role.arn}


def test_granted_job_names_the_mapping_and_role(api, web_registry, web_main_claims):
    body = api.post(URL, {"issuer": "gitlab-example", "claims": web_main_claims}, format="json").json()
    assert body["decision"] == "granted"
    assert body["mapping"] == "web-main-deploy"
    assert body["role_arn"] == web_registry["web"]
    assert body["mappings"] == [
        {
            "name": "web-main-deploy",
            "role_arn": web_registry["web"],
            "matched": True,
            "pin_identity": False,
            "failed": [],
        }
    ]


def test_refused_feature_branch_shows_each_failing_condition(api, web_registry, feature_mr_claims):
    body = api.post(URL, {"issuer": "gitlab-example", "claims": feature_mr_claims}, format="json").json()
    assert body["decision"] == "denied"
    assert body["reason"] == "no_matching_mapping"
    assert body["mapping"] is None and body["role_arn"] is None
    [web] = body["mappings"]
    assert web["matched"] is False
    fields = [f["field"] for f in web["failed"]]
    assert "ref" in fields and "protected" in fields
    ref = next(f for f in web["failed"] if f["field"] == "ref")
    assert ref == {"field": "ref", "pattern": "main", "value": feature_mr_claims["ref"]}


def test_role_arn_lists_that_roles_mappings_even_for_another_project(api, web_registry, web_main_claims):
    """'Why not deploy-api?' for the web job: the api mapping's project prefix differs, so the
    matcher never looked at it; explain still shows it with its failing project condition."""
    body = api.post(
        URL, {"issuer": "gitlab-example", "claims": web_main_claims, "role_arn": web_registry["api"]}, format="json"
    ).json()
    assert body["decision"] == "denied"
    names = {m["name"]: m for m in body["mappings"]}
    assert names["api-production"]["matched"] is False
    assert names["api-production"]["failed"][0] == {
        "field": "project",
        "pattern": "platform/api",
        "value": "platform/web",
    }


def test_unknown_issuer_is_400(api, web_registry, web_main_claims):
    response = api.post(URL, {"issuer": "nope", "claims": web_main_claims}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "nope" in response.json()["error_description"]


@pytest.mark.parametrize(
    "payload",
    [{}, {"issuer": "gitlab-example"}, {"issuer": "gitlab-example", "claims": "x"}, {"issuer": 5, "claims": []}],
)
def test_malformed_requests_are_400(api, web_registry, payload):
    response = api.post(URL, payload, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_odd_claim_types_never_500(api, web_registry):
    claims = {"project_path": ["platform/web"], "ref": 5, "ref_type": None, "ref_protected": True}
    response = api.post(URL, {"issuer": "gitlab-example", "claims": claims}, format="json")
    assert response.status_code == 200
    assert response.json()["decision"] == "denied"


def test_explain_requires_a_staff_token(web_registry, web_main_claims, developer_token):
    payload = {"issuer": "gitlab-example", "claims": web_main_claims}
    assert APIClient().post(URL, payload, format="json").status_code == 401
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {developer_token}")
    assert client.post(URL, payload, format="json").status_code == 403


@pytest.mark.parametrize(
    "persona", ["web_main_claims", "api_production_claims", "release_tag_claims", "feature_mr_claims"]
)
@pytest.mark.parametrize("role", [None, "web", "api"])
def test_explain_decision_is_decide_on_the_live_registry(api, web_registry, request, persona, role):
    claims = request.getfixturevalue(persona)
    role_arn = web_registry[role] if role else None
    body = api.post(URL, {"issuer": "gitlab-example", "claims": claims, "role_arn": role_arn}, format="json").json()
    expected = decide(registry(), issuer="gitlab-example", claims=claims, now=timezone.now(), role_arn=role_arn)
    assert body["decision"] == ("granted" if expected.granted else "denied")
    assert body["reason"] == expected.reason
    assert body["role_arn"] == expected.role_arn


def test_iam_verdict_under_the_roles_generated_trust_policy(api, web_registry, web_main_claims, feature_mr_claims):
    granted = api.post(URL, {"issuer": "gitlab-example", "claims": web_main_claims}, format="json").json()
    assert granted["iam"]["role_arn"] == web_registry["web"]
    assert granted["iam"]["mapping"] == "web-main-deploy"
    assert granted["iam"]["allowed"] is True
    assert granted["iam"]["unchecked"] == []

    # Denied by the matcher, and IAM agrees: the trust policy's sub pattern wants ref main.
    denied = api.post(
        URL, {"issuer": "gitlab-example", "claims": feature_mr_claims, "role_arn": web_registry["web"]}, format="json"
    ).json()
    assert denied["decision"] == "denied"
    assert (denied["iam"]["role_arn"], denied["iam"]["allowed"]) == (web_registry["web"], False)

    elsewhere = {**web_main_claims, "project_path": "other/web"}
    nothing = api.post(URL, {"issuer": "gitlab-example", "claims": elsewhere}, format="json").json()
    assert nothing["decision"] == "denied" and nothing["iam"] is None


def test_warnings_name_the_risky_mappings_in_question(api, web_registry, web_main_claims):
    body = api.post(URL, {"issuer": "gitlab-example", "claims": web_main_claims}, format="json").json()
    assert body["warnings"] == []
    web = web_registry["web"]
    role = RoleFactory._meta.model.objects.get(name="deploy-web")
    services.mapping_create(
        actor="test",
        name="web-reviews",
        issuer=role.mappings.get().issuer,
        role=role,
        project="platform/web",
        ref="*",
        pipeline_sources=["merge_request_event"],
    )
    body = api.post(URL, {"issuer": "gitlab-example", "claims": web_main_claims, "role_arn": web}, format="json").json()
    assert body["decision"] == "granted"
    assert [(w["mapping"], w["code"]) for w in body["warnings"]] == [("web-reviews", "untrusted_pipeline_source")]
    assert "web-main-deploy grants to protected refs" in body["warnings"][0]["message"]


def test_explain_names_each_new_condition_and_iam_agrees(api, web_registry, api_production_claims):
    """The api-production mapping gains the pipeline-definition, environment and runner
    conditions; its account opts in to source identity. Explain shows each failing condition with
    its value, and the IAM verdict (the token Rolegate would mint, source identity included) agrees."""
    mapping = Mapping.objects.get(name="api-production")
    services.registry_update(
        mapping,
        actor="test",
        ci_config_ref_uri="gitlab.example.com/platform/api//.gitlab-ci.yml@refs/heads/*",
        environment_protected=True,
        deployment_tiers=["production"],
        runner_environment="self-hosted",
    )
    services.registry_update(mapping.role.account, actor="test", source_identity=True)
    payload = {"issuer": "gitlab-example", "claims": api_production_claims, "role_arn": web_registry["api"]}
    granted = api.post(URL, payload, format="json").json()
    assert granted["decision"] == "granted"
    assert (granted["iam"]["allowed"], granted["iam"]["unchecked"]) == (True, [])

    claims = {
        **api_production_claims,
        "ci_config_ref_uri": "gitlab.example.com/mallory/fork//.gitlab-ci.yml@refs/heads/main",
        "environment_protected": "false",
        "deployment_tier": "staging",
        "runner_environment": "gitlab-hosted",
    }
    denied = api.post(URL, {**payload, "claims": claims}, format="json").json()
    assert denied["decision"] == "denied"
    [evaluation] = [m for m in denied["mappings"] if m["name"] == "api-production"]
    assert evaluation["failed"] == [
        {
            "field": "ci_config_ref_uri",
            "pattern": "gitlab.example.com/platform/api//.gitlab-ci.yml@refs/heads/*",
            "value": "gitlab.example.com/mallory/fork//.gitlab-ci.yml@refs/heads/main",
        },
        {"field": "environment_protected", "pattern": "true", "value": "false"},
        {"field": "deployment_tiers", "pattern": "production", "value": "staging"},
        {"field": "runner_environment", "pattern": "self-hosted", "value": "gitlab-hosted"},
    ]
    assert denied["iam"]["allowed"] is False
