"""The Content-Security-Policy blocks nothing the console needs: no violation reported by a real
browser on the pages with scripts (the admin's forms) and inline SVG (the dashboard)."""

from __future__ import annotations

import pytest

from tests.console.factories import AuditEventFactory
from tests.factories import web_main_deploy

pytestmark = pytest.mark.browser

PAGES = [
    "/admin/",
    "/admin/rolegate/dashboard/",
    "/admin/rolegate/explain/",
    "/admin/exchange/auditevent/",
    "/admin/mappings/mapping/add/",
    "/admin/mappings/mapping/",
]


def test_no_page_violates_the_policy(logged_in):
    web_main_deploy()
    AuditEventFactory()
    page = logged_in
    violations: list[str] = []
    page.on(
        "console",
        lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None,
    )
    page.expose_function("reportViolation", lambda text: violations.append(text))
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation',"
        " e => window.reportViolation(e.violatedDirective + ' ' + e.blockedURI))"
    )
    for path in PAGES:
        response = page.goto(path)
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_load_state("load")
    assert violations == []
    page.goto("/admin/rolegate/dashboard/")
    assert page.locator("#per-day svg rect").count() >= 1


def test_an_inline_script_would_be_blocked(logged_in):
    """The policy is live in the browser, not just a header: an injected inline script does not run."""
    page = logged_in
    page.goto("/admin/")
    ran = page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.__ran = true';"
        " document.body.appendChild(s); return window.__ran === true; }"
    )
    assert ran is False
