"""Explain can never disagree with the exchange: every decision case of the exchange's suite
(tests/exchange/cases.py) gets the exchange's reason, mapping and role from POST /api/v1/explain."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from console.replay import event_claims, replay_events
from exchange.models import AuditEvent
from mappings.matching import Registry
from mappings.selectors import registry_rules
from tests.exchange import cases

# The exchange's stand-in GitLab (signed tokens, JWKS on 127.0.0.1), to run the real exchange.
from tests.exchange.conftest import (  # noqa: F401  (fixtures)
    _fresh_process_caches,
    _gitlab_server,
    exchange_params,
    gitlab_key,
    post_form,
    stand_in,
)

pytestmark = pytest.mark.django_db
CASES = pytest.mark.parametrize(
    ("name", "claims", "role_arn", "expected"), cases.CASES, ids=[c[0] for c in cases.CASES]
)


@CASES
def test_explain_decides_every_exchange_case_like_the_exchange(api, name, claims, role_arn, expected):
    cases.build_registry("https://gitlab.example.com")
    response = api.post(
        "/api/v1/explain", {"issuer": cases.ISSUER_NAME, "claims": claims, "role_arn": role_arn}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["reason"] == expected
    assert body["decision"] == ("granted" if expected == "granted" else "denied")
    if expected == "granted":
        assert body["role_arn"] is not None and body["mapping"] is not None
        if role_arn:
            assert body["role_arn"] == role_arn
        assert any(m["matched"] and m["name"] == body["mapping"] for m in body["mappings"])
    else:
        assert body["mapping"] is None


@CASES
def test_explain_and_replay_agree_with_what_the_exchange_actually_decided(
    api,
    stand_in,  # noqa: F811
    name,
    claims,
    role_arn,
    expected,
):
    """Each case through POST /api/v1/token with a real signed token; then explain on the claims
    the exchange audited, and replay of that audit event under the same registry."""
    cases.build_registry(stand_in.url)
    post_form(APIClient(), "/api/v1/token", exchange_params(stand_in.mint(stand_in.claims(claims)), role_arn))
    event = AuditEvent.objects.get()
    assert event.reason == expected
    body = api.post(
        "/api/v1/explain",
        {"issuer": event.issuer, "claims": event_claims(event), "role_arn": event.requested_role_arn},
        format="json",
    ).json()
    assert (body["reason"], body["mapping"], body["role_arn"]) == (event.reason, event.mapping, event.role_arn)
    assert replay_events(registry=Registry(registry_rules()), events=[event]) == []
