"""docs/api.md#the-minted-token: every minted token has a fresh ``jti`` -- not the subject token's,
and not another minted token's, even for the same job (the audit event's ``minted_jti`` joins a
CloudTrail event to exactly one exchange)."""

from __future__ import annotations

import jwt

from exchange.models import AuditEvent
from tests.exchange import cases
from tests.exchange.conftest import exchange_params, post_form

TOKEN = "/api/v1/token"


def minted_jti(api, token: str, role_arn: str) -> str:
    response = post_form(api, TOKEN, exchange_params(token, role_arn))
    assert response.status_code == 200, response.content
    jti = jwt.decode(response.json()["access_token"], options={"verify_signature": False})["jti"]
    assert AuditEvent.objects.get(request_id=response["X-Request-ID"]).minted_jti == jti
    return jti


def test_every_minted_token_has_a_jti_of_its_own(api, registry, stand_in, web_main_claims):
    source = stand_in.claims(web_main_claims)
    token = stand_in.mint(source)
    same_job_again = stand_in.mint(stand_in.claims(web_main_claims, job_id=source["job_id"]))
    jtis = [
        minted_jti(api, token, cases.DEPLOY_WEB),
        minted_jti(api, token, cases.READONLY),
        minted_jti(api, same_job_again, cases.DEPLOY_WEB),
    ]
    assert len(set(jtis)) == len(jtis)
    assert source["jti"] not in jtis
    assert all(isinstance(jti, str) and len(jti) >= 16 for jti in jtis)
