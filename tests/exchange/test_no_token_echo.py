"""docs/api.md#audit-trail: raw tokens are never stored or logged -- whichever check refuses them.
test_audit.py proves it for a grant, a replay and a forged signature; here every other refusal of
the subject token checks and of the decision: neither the presented token nor its signature is in
the answer, the audit row, the exports or the log (a refusal must name the failing check, never
echo what was presented)."""

from __future__ import annotations

import io
import logging
import time

import jwt
import pytest
from django.core.management import call_command
from django.db import connection

from exchange.models import AuditEvent
from tests.exchange import cases
from tests.exchange.conftest import exchange_params, post_form
from tests.exchange.gitlab_stand_in import GitLabKey, unsigned_token

TOKEN = "/api/v1/token"
CREDENTIALS = "/api/v1/credentials"


def _kinds(stand_in, claims: dict) -> dict[str, tuple[str, str]]:
    """kind -> (token, role ARN): one presented token per way of being refused."""
    now = int(time.time())
    mint = stand_in.mint
    valid = mint(stand_in.claims(claims))
    header, _, signature = valid.split(".")
    return {
        "malformed: four segments": (f"{valid}.{signature}", cases.DEPLOY_WEB),
        "malformed: payload not JSON": (f"{header}.{signature}.{signature}", cases.DEPLOY_WEB),
        "alg none": (
            unsigned_token({"alg": "none", "kid": stand_in.signing.kid}, stand_in.claims(claims)),
            cases.DEPLOY_WEB,
        ),
        "alg not allowed": (
            jwt.encode(
                stand_in.claims(claims), stand_in.signing.private_key, "RS512", headers={"kid": stand_in.signing.kid}
            ),
            cases.DEPLOY_WEB,
        ),
        "unknown kid": (mint(stand_in.claims(claims), key=GitLabKey()), cases.DEPLOY_WEB),
        "unknown issuer": (mint(stand_in.claims(claims, iss="https://gitlab.elsewhere.example")), cases.DEPLOY_WEB),
        "expired": (mint(stand_in.claims(claims, iat=now - 900, nbf=now - 900, exp=now - 120)), cases.DEPLOY_WEB),
        "not yet valid": (mint(stand_in.claims(claims, nbf=now + 600, exp=now + 900)), cases.DEPLOY_WEB),
        "wrong audience": (mint(stand_in.claims(claims, aud="https://elsewhere.example")), cases.DEPLOY_WEB),
        "missing claim": (mint(stand_in.claims(claims, project_path=None)), cases.DEPLOY_WEB),
        "invalid claim": (mint(stand_in.claims(claims, ref_protected=True)), cases.DEPLOY_WEB),
        "tampered payload": (
            f"{header}.{unsigned_token({}, stand_in.claims(claims, user_login='mallory')).split('.')[1]}.{signature}",
            cases.DEPLOY_WEB,
        ),
        "no matching mapping": (mint(stand_in.claims(claims, ref="dev")), cases.DEPLOY_WEB),
        "direct mode account": (mint(stand_in.claims(claims)), cases.LEGACY_DEPLOY),
        "ambiguous role": (mint(stand_in.claims(claims)), ""),
    }


@pytest.mark.parametrize("path", [TOKEN, CREDENTIALS])
def test_no_refused_token_is_echoed_stored_exported_or_logged(api, registry, stand_in, web_main_claims, caplog, path):
    caplog.set_level(logging.DEBUG)
    presented = []
    for kind, (token, role_arn) in _kinds(stand_in, web_main_claims).items():
        params = exchange_params(token, role_arn or None)
        response = post_form(api, path, params)
        assert response.status_code == 400, (kind, response.content)
        assert AuditEvent.objects.get(request_id=response["X-Request-ID"]).outcome == "denied", kind
        for secret in (token, token.split(".")[2] if token.count(".") >= 2 else token):
            if len(secret) >= 16:
                assert secret.encode() not in response.content, kind
                presented.append((kind, secret))

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM exchange_auditevent")
        rows = str(cursor.fetchall())
    dump, jsonl, csv = io.StringIO(), io.StringIO(), io.StringIO()
    call_command("dumpdata", "exchange", stdout=dump)
    call_command("audit_export", stdout=jsonl)
    call_command("audit_export", "--format", "csv", stdout=csv)
    for kind, secret in presented:
        for where, text in (
            ("rows", rows),
            ("dumpdata", dump.getvalue()),
            ("jsonl", jsonl.getvalue()),
            ("csv", csv.getvalue()),
            ("log", caplog.text),
        ):
            assert secret not in text, (kind, where)
