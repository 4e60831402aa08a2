"""Two issuers side by side (docs/configuration.md#issuers): a token is judged by the issuer its
``iss`` names and by nothing of another -- not its keys, not its audiences, not its mappings."""

from __future__ import annotations

import pytest

from exchange.models import AuditEvent
from tests.exchange import cases
from tests.exchange.conftest import exchange_params, post_form, second_gitlab
from tests.exchange.gitlab_stand_in import GitLabKey, StandInGitLab

TOKEN = "/api/v1/token"
OTHER_AUDIENCE = "https://rolegate-other.example.com"


@pytest.fixture
def other_gitlab(registry):
    """A second GitLab, with an audience of its own and a mapping to deploy-web."""
    server = StandInGitLab(GitLabKey())
    second_gitlab(server, audiences=[OTHER_AUDIENCE])
    yield server
    server.stop()


def reason(api, token: str, role_arn: str = cases.DEPLOY_WEB) -> str:
    response = post_form(api, TOKEN, exchange_params(token, role_arn))
    return AuditEvent.objects.get(request_id=response["X-Request-ID"]).reason


def test_each_issuer_grants_with_its_own_audience(api, stand_in, other_gitlab, web_main_claims):
    assert reason(api, stand_in.mint(stand_in.claims(web_main_claims))) == "granted"
    assert reason(api, other_gitlab.mint(other_gitlab.claims(web_main_claims, aud=OTHER_AUDIENCE))) == "granted"


def test_another_issuers_audience_is_a_wrong_audience(api, stand_in, other_gitlab, web_main_claims):
    assert reason(api, other_gitlab.mint(other_gitlab.claims(web_main_claims, aud=cases.AUDIENCE))) == "wrong_audience"
    assert reason(api, stand_in.mint(stand_in.claims(web_main_claims, aud=OTHER_AUDIENCE))) == "wrong_audience"


def test_a_token_signed_by_one_issuer_naming_the_other_is_refused(api, stand_in, other_gitlab, web_main_claims):
    """The other GitLab's key under our iss: checked against our JWKS, where its kid is unknown."""
    forged = other_gitlab.mint(stand_in.claims(web_main_claims))
    assert reason(api, forged) == "unknown_kid"
    same_kid = other_gitlab.mint(stand_in.claims(web_main_claims), headers={"kid": stand_in.signing.kid})
    assert reason(api, same_kid) == "bad_signature"


def test_a_mapping_of_one_issuer_grants_nothing_to_the_other(api, stand_in, other_gitlab, web_main_claims):
    # readonly is mapped for gitlab-test only (platform-readonly): the other GitLab's job is refused.
    token = other_gitlab.mint(other_gitlab.claims(web_main_claims, aud=OTHER_AUDIENCE))
    assert reason(api, token, cases.READONLY) == "no_matching_mapping"
