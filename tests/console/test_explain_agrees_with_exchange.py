"""Explain can never disagree with the exchange: every decision case of the exchange's suite
(tests/exchange/cases.py) gets the same reason, mapping and role from POST /api/v1/explain."""

from __future__ import annotations

import pytest

cases = pytest.importorskip("tests.exchange.cases", reason="the exchange's cases are not on this branch yet")

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("name", "claims", "role_arn", "expected"), cases.CASES, ids=[c[0] for c in cases.CASES])
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
