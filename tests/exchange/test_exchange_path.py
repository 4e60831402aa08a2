"""The exchange endpoints' own path through Django (exchange.middleware, docs/architecture.md
"The hot path"): answered right after SecurityMiddleware by the views the URLconf names, so no
browser-facing middleware and no URL resolution runs for them; what of those layers still
matters for a JSON answer is kept -- Host validation, no framing, no loading, a Content-Length."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.sessions.middleware import SessionMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import resolvers
from rest_framework.test import APIClient

from exchange.middleware import HEADERS
from exchange.models import AuditEvent
from tests.exchange import cases
from tests.exchange.conftest import exchange_params, post_form

TOKEN = "/api/v1/token"
CREDENTIALS = "/api/v1/credentials"


@pytest.fixture
def calls(monkeypatch, api):
    """Counts of what the browser-facing layers and the URL resolver were asked to do, once the
    client's handler has loaded its middleware (which reads the URLconf)."""
    assert api.get("/healthz").status_code == 200
    seen = {"session": 0, "csrf": 0, "resolve": 0}

    def counting(name, original):
        def counted(*args, **kwargs):
            seen[name] += 1
            return original(*args, **kwargs)

        return counted

    monkeypatch.setattr(SessionMiddleware, "process_request", counting("session", SessionMiddleware.process_request))
    monkeypatch.setattr(CsrfViewMiddleware, "process_request", counting("csrf", CsrfViewMiddleware.process_request))
    monkeypatch.setattr(resolvers.URLResolver, "resolve", counting("resolve", resolvers.URLResolver.resolve))
    return seen


def test_a_granted_exchange_passes_through_no_browser_middleware(api, registry, stand_in, web_main_claims, calls):
    token = stand_in.mint(stand_in.claims(web_main_claims))
    response = post_form(api, TOKEN, exchange_params(token, cases.DEPLOY_WEB))
    assert response.status_code == 200, response.content
    assert AuditEvent.objects.get(request_id=response["X-Request-ID"]).outcome == "granted"
    assert calls == {"session": 0, "csrf": 0, "resolve": 0}
    assert "sessionid" not in response.cookies and "csrftoken" not in response.cookies

    # Everything else still goes the whole way (the counters count).
    assert api.get("/.well-known/openid-configuration").status_code == 200
    assert calls["session"] == 1 and calls["csrf"] == 1 and calls["resolve"] >= 1


@pytest.mark.parametrize("path", [TOKEN, CREDENTIALS])
@pytest.mark.parametrize("method", ["post", "get"])
def test_every_answer_is_unframeable_loads_nothing_and_has_its_length(api, registry, path, method):
    response = getattr(api, method)(path)
    assert response.status_code == (400 if method == "post" else 405), response.content
    for name, value in HEADERS.items():
        assert response[name] == value
    assert response["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert int(response["Content-Length"]) == len(response.content) > 0
    assert response["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware, still around it
    assert response["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", [TOKEN, CREDENTIALS])
def test_a_host_the_settings_refuse_is_refused_before_the_view(api, registry, path):
    response = api.post(path, HTTP_HOST="attacker.example")
    assert response.status_code == 400
    assert response["X-Frame-Options"] == "DENY"
    assert len(response["X-Request-ID"]) == 32  # every response carries one, this one too
    assert not AuditEvent.objects.exists()  # the view never ran


def test_a_path_beside_the_endpoints_is_not_theirs(api, registry):
    response = api.post(TOKEN + "/")
    assert response.status_code == 404
    assert "default-src 'self'" in response["Content-Security-Policy"]  # the console's policy


def test_the_middleware_comes_right_after_the_https_layer():
    order = settings.MIDDLEWARE
    assert order.index("exchange.middleware.ExchangeApiMiddleware") == (
        order.index("django.middleware.security.SecurityMiddleware") + 1
    )


def test_plain_http_is_still_redirected_to_https(settings, registry):
    settings.SECURE_SSL_REDIRECT = True
    response = APIClient().post(TOKEN)  # a client built after the setting: its handler reads it
    assert response.status_code == 301 and response["Location"].startswith("https://")
    assert not AuditEvent.objects.exists()
