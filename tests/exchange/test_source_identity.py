"""Source identity (docs/trust-model.md, "Source identity"): where the account opts in, the minted
token carries https://aws.amazon.com/source_identity, the role's trust policy allows
sts:SetSourceIdentity, and /api/v1/credentials hands STS that token.

AssumeRoleWithWebIdentity has no SourceIdentity parameter (botocore's service model: RoleArn,
RoleSessionName, WebIdentityToken, ProviderId, PolicyArns, Policy, DurationSeconds, ...): STS
takes the source identity from the token's claim. moto does not read the token, so the test
asserts on the call moto receives.
"""

from __future__ import annotations

import botocore.session
import jwt
import pytest
from django.conf import settings

from exchange import aws_sts
from mappings import iam_eval, policies, services
from mappings.iam.selectors import role_desired_policy
from mappings.models import Account, Role
from tests.exchange import cases
from tests.exchange.conftest import exchange_params, post_form, verify_like_aws

CLAIM = "https://aws.amazon.com/source_identity"


@pytest.fixture
def opted_in(registry):
    services.registry_update(Account.objects.get(name="prod"), actor="tests", source_identity=True)
    return registry


def test_sts_takes_no_source_identity_parameter_for_web_identity():
    model = botocore.session.get_session().get_service_model("sts")
    operation = model.operation_model("AssumeRoleWithWebIdentity")
    assert "SourceIdentity" not in operation.input_shape.members
    assert "SourceIdentity" in operation.output_shape.members


def test_minted_token_carries_the_job_as_source_identity(api, opted_in, stand_in, web_main_claims):
    response = post_form(
        api, "/api/v1/token", exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.DEPLOY_WEB)
    )
    assert response.status_code == 200, response.content
    minted = verify_like_aws(api, response.json()["access_token"], audience=cases.STS_AUDIENCE)
    assert minted[CLAIM] == "gl-20-302" == response.json()["role_session_name"]


def test_without_opting_in_there_is_none(api, registry, stand_in, web_main_claims):
    response = post_form(
        api, "/api/v1/token", exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.DEPLOY_WEB)
    )
    minted = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert CLAIM not in minted


def test_the_trust_policy_admits_the_minted_token_with_its_source_identity(api, opted_in, stand_in, web_main_claims):
    role = Role.objects.get(account__name="prod", name="deploy-web")
    document = role_desired_policy(role).document
    assert all(policies.SOURCE_IDENTITY_ACTION in statement["Action"] for statement in document["Statement"])
    response = post_form(
        api, "/api/v1/token", exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.DEPLOY_WEB)
    )
    minted = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    tags = {key: values[0] for key, values in minted[policies.minted.TAGS_CLAIM]["principal_tags"].items()}

    def admits(document: dict) -> bool:
        return iam_eval.minted_sub_allowed(
            document,
            rolegate_issuer=settings.ROLEGATE_ISSUER,
            account_id=cases.PROD,
            sub=minted["sub"],
            aud=minted["aud"],
            request_tags=tags,
            source_identity=minted[CLAIM],
        )

    assert admits(document)
    # The same token against the policy of an account that has not opted in: IAM refuses it.
    services.registry_update(Account.objects.get(name="prod"), actor="tests", source_identity=False)
    assert not admits(role_desired_policy(Role.objects.get(pk=role.pk)).document)


def test_credentials_hand_sts_the_token_with_the_source_identity(api, opted_in, stand_in, web_main_claims, sts):
    sent: dict = {}
    aws_sts.client().meta.events.register(
        "provide-client-params.sts.AssumeRoleWithWebIdentity", lambda params, **kwargs: sent.update(params)
    )
    params = exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.DEPLOY_WEB)
    params.pop("grant_type")
    response = post_form(api, "/api/v1/credentials", params)
    assert response.status_code == 200, response.content  # moto answered the call
    assert set(sent) == {"RoleArn", "RoleSessionName", "WebIdentityToken", "DurationSeconds"}
    assert sent["RoleSessionName"] == "gl-20-302"
    token = verify_like_aws(api, sent["WebIdentityToken"], audience=cases.STS_AUDIENCE)
    assert token[CLAIM] == "gl-20-302"
