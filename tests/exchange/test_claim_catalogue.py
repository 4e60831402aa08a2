"""The claim catalogue (mappings/claims.py) is what the exchange does: every flag of every claim
is enforced or applied, and no module keeps a list of claim names of its own."""

from __future__ import annotations

import ast
from pathlib import Path

import jwt
import pytest

from exchange.models import AuditEvent
from mappings import claims as catalogue
from mappings.claims import CATALOGUE, Minted
from tests.exchange import cases
from tests.exchange.conftest import exchange_params, post_form
from tests.exchange.test_subject_token_checks import assert_invalid_grant

TOKEN = "/api/v1/token"
ROOT = Path(__file__).resolve().parents[2]
APPS = ("exchange", "mappings", "console", "portal")


@pytest.mark.parametrize("claim", [c.name for c in CATALOGUE if c.required], ids=str)
def test_every_required_claim_is_required(api, registry, stand_in, web_main_claims, claim):
    if claim == "iss":  # without iss there is no issuer to verify with: malformed, not verified
        token = stand_in.mint(stand_in.claims(web_main_claims, iss=None))
        body, _ = assert_invalid_grant(api, token, "missing_claim")
    else:
        token = stand_in.mint(stand_in.claims(web_main_claims, **{claim: None}))
        verified = not catalogue.BY_NAME[claim].registered  # PyJWT refuses before the signature is trusted
        body, _ = assert_invalid_grant(api, token, "missing_claim", verified=verified)
    assert claim in body["error_description"]


@pytest.mark.parametrize("claim", [c for c in CATALOGUE if c.checked_string], ids=lambda c: c.name)
def test_every_checked_string_is_a_bounded_string(api, registry, stand_in, web_main_claims, claim):
    too_long = "x" * (claim.max_length + 1)
    token = stand_in.mint(stand_in.claims(web_main_claims, **{claim.name: too_long}))
    body, _ = assert_invalid_grant(api, token, "invalid_claim", verified=True)
    assert claim.name in body["error_description"]


@pytest.mark.parametrize("claim", [c for c in CATALOGUE if c.checked_string], ids=lambda c: c.name)
def test_every_checked_string_refuses_another_json_type(api, registry, stand_in, web_main_claims, claim):
    token = stand_in.mint(stand_in.claims(web_main_claims, **{claim.name: 7}))
    body, _ = assert_invalid_grant(api, token, "invalid_claim", verified=True)
    assert claim.name in body["error_description"]


@pytest.mark.parametrize("claim", [c for c in CATALOGUE if c.values], ids=lambda c: c.name)
def test_enumerated_claims_accept_only_their_values(api, registry, stand_in, web_main_claims, claim):
    token = stand_in.mint(stand_in.claims(web_main_claims, **{claim.name: "something-else"}))
    body, _ = assert_invalid_grant(api, token, "invalid_claim", verified=True)
    assert all(value in body["error_description"] for value in claim.values)


def test_minted_token_carries_exactly_what_the_catalogue_and_discovery_say(
    api, registry, stand_in, api_production_claims
):
    source = stand_in.claims(api_production_claims, user_login="bob")
    response = post_form(api, TOKEN, exchange_params(stand_in.mint(source), cases.DEPLOY_API))
    assert response.status_code == 200, response.content
    minted = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    supported = api.get("/.well-known/openid-configuration").json()["claims_supported"]
    assert set(minted) <= set(supported)
    for claim in CATALOGUE:
        if claim.minted is Minted.COPIED:
            assert minted[claim.name] == source[claim.name] and type(minted[claim.name]) is type(source[claim.name])
        elif claim.minted is Minted.OWN:
            assert claim.name in minted
        else:
            assert claim.name not in minted
    tags = minted["https://aws.amazon.com/tags"]["principal_tags"]
    assert list(tags) == [*catalogue.SESSION_TAGS, "mapping"]


def test_the_audit_event_keeps_every_audited_claim(api, registry, stand_in, api_production_claims):
    source = stand_in.claims(api_production_claims, user_login="bob")
    response = post_form(api, TOKEN, exchange_params(stand_in.mint(source), cases.DEPLOY_API))
    assert response.status_code == 200, response.content
    event = AuditEvent.objects.get()
    assert {name: getattr(event, name) for name in catalogue.AUDITED} == {
        name: source[name] for name in catalogue.AUDITED
    }


def _python_files():
    """The code, but not migrations nor admin modules (whose field lists name model fields, such
    as a mapping's ``ref`` and ``environment`` patterns, not claims)."""
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" not in path.parts and path.name != "admin.py":
                yield path


def test_no_module_keeps_its_own_list_of_claim_names():
    """grep, as a test: a tuple, list or set literal naming three or more catalogue claims
    anywhere but mappings/claims.py is a second list that will drift."""
    names = set(catalogue.BY_NAME) - {"iss", "sub", "aud", "exp", "iat", "nbf", "jti"}
    found = []
    for path in _python_files():
        if path == ROOT / "mappings" / "claims.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Tuple | ast.List | ast.Set):
                strings = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                if len(strings & names) >= 3:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


def test_the_gitlab_client_takes_plain_values_not_the_orm():
    tree = ast.parse((ROOT / "exchange" / "gitlab.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {
        module for module in imported if module and (module.endswith("models") or module.startswith("django.db"))
    }
