"""A Content-Security-Policy on every page (found in review: none): no inline or foreign script,
no framing, nothing loaded from another origin."""

from __future__ import annotations

import pytest

from tests.console.factories import AuditEventFactory

pytestmark = pytest.mark.django_db

PAGES = [
    "/admin/login/",
    "/admin/",
    "/admin/rolegate/dashboard/",
    "/admin/rolegate/explain/",
    "/admin/exchange/auditevent/",
    "/admin/mappings/mapping/",
    "/api/v1/audit-events/",
    "/.well-known/openid-configuration",
]  # /healthz and /readyz are plain-text probes answered before every other middleware


def directives(header: str) -> dict[str, list[str]]:
    parsed = {}
    for part in header.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


@pytest.mark.parametrize("path", PAGES)
def test_every_page_has_a_policy_without_inline_scripts(admin_client, path):
    AuditEventFactory()
    response = admin_client.get(path)
    assert response.status_code in (200, 302, 401), response.status_code
    policy = directives(response["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]
    assert all("unsafe" not in value for value in policy["script-src"] + policy["default-src"])


def test_the_dashboard_has_no_inline_script_the_policy_would_block(admin_client):
    AuditEventFactory()
    page = admin_client.get("/admin/rolegate/dashboard/").content.decode()
    assert "<svg" in page
    for tag in page.split("<script")[1:]:
        assert "src=" in tag.split(">", 1)[0], tag[:200]
