"""GET /metrics counts real exchanges: the stand-in GitLab, signed tokens, the audit's one hook.

Counters are per process and shared by every test of a pytest worker, so each test compares a
scrape after with a scrape before."""

from __future__ import annotations

import pytest
from django.db import DatabaseError
from prometheus_client.parser import text_string_to_metric_families

from exchange import jwks_status, services
from exchange.models import AuditEvent
from tests.exchange import cases
from tests.exchange.conftest import exchange_params, post_form

TOKEN = "/api/v1/token"
METRICS_TOKEN = "scrape-secret-0123456789"


@pytest.fixture(autouse=True)
def _metrics_on(settings):
    settings.ROLEGATE_METRICS_TOKEN = METRICS_TOKEN
    settings.ROLEGATE_METRICS_ALLOWED_NETWORKS = []


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def delta(before: dict, after: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_a_real_exchange_is_counted_with_its_latency(
    api, client, registry, stand_in, web_main_claims, django_capture_on_commit_callbacks
):
    before = scrape(client)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_form(
            api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.DEPLOY_WEB)
        )
    assert response.status_code == 200, response.content
    after = scrape(client)

    granted = {"endpoint": "token", "outcome": "granted", "reason": "granted"}
    assert delta(before, after, "rolegate_exchanges_total", **granted) == 1
    assert delta(before, after, "rolegate_exchange_duration_seconds_count", endpoint="token") == 1
    assert delta(before, after, "rolegate_exchange_duration_seconds_bucket", endpoint="token", le="+Inf") == 1
    # The JWKS was fetched once for this fresh process, from the registered issuer's name.
    assert delta(before, after, "rolegate_jwks_fetches_total", issuer="gitlab-test") == 1
    assert delta(before, after, "rolegate_jwks_fetch_failures_total", issuer="gitlab-test") == 0
    assert jwks_status.jwks_status("gitlab-test")["ok"] is True


def test_a_denied_exchange_is_counted_with_its_reason(
    api, client, registry, stand_in, feature_mr_claims, django_capture_on_commit_callbacks
):
    before = scrape(client)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_form(
            api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(feature_mr_claims)), cases.READONLY)
        )
    assert response.status_code == 400
    after = scrape(client)
    event = AuditEvent.objects.get()
    assert event.reason == "no_matching_mapping"
    denied = {"endpoint": "token", "outcome": "denied", "reason": event.reason}
    assert delta(before, after, "rolegate_exchanges_total", **denied) == 1
    assert delta(before, after, "rolegate_exchanges_total", endpoint="token", outcome="granted", reason="granted") == 0


def test_an_unreachable_jwks_is_counted_and_recorded(
    api, client, registry, stand_in, web_main_claims, django_capture_on_commit_callbacks
):
    stand_in.down = True
    before = scrape(client)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_form(
            api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.DEPLOY_WEB)
        )
    assert response.status_code == 503
    after = scrape(client)
    assert delta(before, after, "rolegate_jwks_fetch_failures_total", issuer="gitlab-test") == 1
    assert (
        delta(before, after, "rolegate_exchanges_total", endpoint="token", outcome="denied", reason="jwks_unavailable")
        == 1
    )
    status = jwks_status.jwks_status("gitlab-test")
    assert status["ok"] is False and "503" in status["error"]


def test_an_audit_write_failure_is_counted(api, client, registry, stand_in, web_main_claims, monkeypatch):
    def failing_audit(*args, **kwargs):
        raise DatabaseError("the audit table is unavailable")

    before = scrape(client)
    monkeypatch.setattr(services, "audit_record", failing_audit)
    monkeypatch.setattr(services, "audit_record_spending", failing_audit)  # the token endpoint's one statement
    response = post_form(api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.DEPLOY_WEB))
    assert response.status_code == 503
    after = scrape(client)
    assert delta(before, after, "rolegate_audit_write_failures_total") == 1
    assert delta(before, after, "rolegate_exchanges_total", endpoint="token", outcome="granted", reason="granted") == 0
