"""What a replay is (docs/api.md#token-exchange): a subject token is exchanged at most once for
each role, the token being its ``iss`` + ``jti`` -- not the bytes presented, and not the endpoint
that was asked. A token re-signed with the jti of a spent one is still spent; spending a token at
``/api/v1/token`` spends it at ``/api/v1/credentials`` for that role too, and the other way round;
the same jti from another issuer is another token."""

from __future__ import annotations

import uuid

import pytest

from exchange.models import AuditEvent
from tests.exchange import cases
from tests.exchange.conftest import exchange_params, post_form, second_gitlab
from tests.exchange.gitlab_stand_in import GitLabKey, StandInGitLab

TOKEN = "/api/v1/token"
CREDENTIALS = "/api/v1/credentials"


def assert_replay(response) -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"] == "invalid_grant"
    event = AuditEvent.objects.get(request_id=response["X-Request-ID"])
    assert (event.outcome, event.reason) == ("denied", "replay")
    assert "already exchanged" in body["error_description"]


def test_a_token_re_signed_with_a_spent_jti_is_a_replay(api, registry, stand_in, web_main_claims):
    """Another signature, other times, another job: the same iss and jti are the same token."""
    jti = str(uuid.uuid4())
    first = stand_in.mint(stand_in.claims(web_main_claims, jti=jti))
    assert post_form(api, TOKEN, exchange_params(first, cases.DEPLOY_WEB)).status_code == 200

    again = stand_in.mint(stand_in.claims(web_main_claims, jti=jti, job_id="303", user_login="bob"))
    assert again != first
    assert_replay(post_form(api, TOKEN, exchange_params(again, cases.DEPLOY_WEB)))
    # Once per role: the re-signed token is still good at a role it was never exchanged for.
    assert post_form(api, TOKEN, exchange_params(again, cases.READONLY)).status_code == 200


@pytest.mark.parametrize(("spent_at", "then_at"), [(TOKEN, CREDENTIALS), (CREDENTIALS, TOKEN)])
def test_a_token_spent_at_one_endpoint_is_spent_at_the_other_for_that_role(
    api, registry, stand_in, web_main_claims, sts, spent_at, then_at
):
    token = stand_in.mint(stand_in.claims(web_main_claims))
    assert post_form(api, spent_at, exchange_params(token, cases.READONLY)).status_code == 200
    assert_replay(post_form(api, then_at, exchange_params(token, cases.READONLY)))
    assert_replay(post_form(api, spent_at, exchange_params(token, cases.READONLY)))
    assert post_form(api, then_at, exchange_params(token, cases.DEPLOY_WEB)).status_code == 200


@pytest.fixture
def other_gitlab():
    server = StandInGitLab(GitLabKey())
    yield server
    server.stop()


def test_the_same_jti_from_another_issuer_is_another_token(api, registry, stand_in, other_gitlab, web_main_claims):
    second_gitlab(other_gitlab, audiences=[cases.AUDIENCE])
    jti = str(uuid.uuid4())
    ours = stand_in.mint(stand_in.claims(web_main_claims, jti=jti))
    theirs = other_gitlab.mint(other_gitlab.claims(web_main_claims, jti=jti))

    assert post_form(api, TOKEN, exchange_params(theirs, cases.DEPLOY_WEB)).status_code == 200
    granted = post_form(api, TOKEN, exchange_params(ours, cases.DEPLOY_WEB))
    assert granted.status_code == 200, granted.content
    assert_replay(post_form(api, TOKEN, exchange_params(ours, cases.DEPLOY_WEB)))
    assert_replay(post_form(api, TOKEN, exchange_params(theirs, cases.DEPLOY_WEB)))
