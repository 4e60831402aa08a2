"""Pin on first use through the exchange (docs/trust-model.md#identity-pins): the first grant pins
the project's and namespace's ids; a token whose path is pinned to another id is refused
``identity_changed`` before anything is minted; an accepted change lets the new id in; two first
uses racing with different ids: one wins, the other is refused."""

from __future__ import annotations

import threading

import pytest
from django.db import OperationalError, connection

from exchange.models import AuditEvent, UsedToken
from mappings import pins, services
from mappings.matching import NAMESPACE, PROJECT, Pin
from mappings.models import IdentityPin, Mapping
from tests.exchange import cases
from tests.exchange.conftest import exchange_params, post_form
from tests.services import require_postgresql

TOKEN = "/api/v1/token"


@pytest.fixture
def pinning(registry):
    """The shared registry with web-main-deploy pinning identities on first use."""
    services.registry_update(Mapping.objects.get(name="web-main-deploy"), actor="tests", pin_identity=True)
    return registry


def exchange(api, stand_in, claims, **overrides):
    token = stand_in.mint(stand_in.claims(claims, **overrides))
    return post_form(api, TOKEN, exchange_params(token, cases.DEPLOY_WEB))


def audit(response) -> AuditEvent:
    return AuditEvent.objects.get(request_id=response["X-Request-ID"])


@pytest.mark.django_db
def test_the_first_grant_pins_and_another_project_at_the_path_is_refused(api, pinning, stand_in, web_main_claims):
    first = exchange(api, stand_in, web_main_claims)
    assert first.status_code == 200, first.json()
    assert sorted(IdentityPin.objects.values_list("kind", "path", "gitlab_id", "pinned_by")) == [
        ("namespace", "platform", "72", "first granted through mapping web-main-deploy"),
        ("project", "platform/web", "20", "first granted through mapping web-main-deploy"),
    ]
    assert exchange(api, stand_in, web_main_claims).status_code == 200  # the same project again

    refused = exchange(api, stand_in, web_main_claims, project_id="99")
    assert refused.status_code == 400
    body = refused.json()
    assert body["error"] == "invalid_target"
    assert "project 'platform/web' is pinned to project_id 20 since " in body["error_description"]
    assert "this token has project_id 99" in body["error_description"]
    event = audit(refused)
    assert (event.outcome, event.reason, event.detail, event.project_id) == (
        "denied",
        "identity_changed",
        body["error_description"],
        "99",
    )
    assert event.minted_jti is None and not UsedToken.objects.filter(jti=event.jti).exists()


@pytest.mark.django_db
def test_a_reclaimed_namespace_is_refused(api, pinning, stand_in, web_main_claims):
    assert exchange(api, stand_in, web_main_claims).status_code == 200
    refused = exchange(api, stand_in, web_main_claims, namespace_id="1000")
    assert audit(refused).reason == "identity_changed"
    assert "namespace 'platform' is pinned to namespace_id 72" in refused.json()["error_description"]


@pytest.mark.django_db
def test_after_an_accepted_change_the_new_id_is_granted_and_the_old_one_refused(
    api, pinning, stand_in, web_main_claims
):
    assert exchange(api, stand_in, web_main_claims).status_code == 200
    assert exchange(api, stand_in, web_main_claims, project_id="99").status_code == 400
    pins.identity_change_accept(
        issuer=cases.ISSUER_NAME, kind=PROJECT, path="platform/web", new_id="99", actor="t", note="re-created"
    )
    assert exchange(api, stand_in, web_main_claims, project_id="99").status_code == 200
    assert audit(exchange(api, stand_in, web_main_claims)).reason == "identity_changed"


@pytest.mark.django_db
def test_without_pinning_nothing_is_pinned(api, registry, stand_in, web_main_claims):
    assert exchange(api, stand_in, web_main_claims).status_code == 200
    assert exchange(api, stand_in, web_main_claims, project_id="99").status_code == 200
    assert not IdentityPin.objects.exists()


@pytest.mark.django_db
def test_a_path_pinned_by_another_process_since_this_ones_snapshot_is_refused(
    api, pinning, stand_in, web_main_claims, monkeypatch
):
    """Between this process's decision (no pin in its snapshot) and its first-use write, another
    process pinned the path to another id: the write finds it and the token is refused."""
    real = pins.pins_record

    def another_process_first(new_pins):
        assert real([Pin(cases.ISSUER_NAME, PROJECT, "platform/web", "20")]) == []
        return real(new_pins)

    monkeypatch.setattr(pins, "pins_record", another_process_first)
    refused = exchange(api, stand_in, web_main_claims, project_id="99")
    assert refused.status_code == 400
    assert "access_token" not in refused.json()
    assert audit(refused).reason == "identity_changed"
    assert IdentityPin.objects.get().gitlab_id == "20"  # and nothing of the refused token's
    assert not UsedToken.objects.exists()


@pytest.mark.django_db
def test_a_pin_that_cannot_be_written_hands_out_nothing(api, pinning, stand_in, web_main_claims, monkeypatch):
    def down(new_pins):
        raise OperationalError("the database went away")

    monkeypatch.setattr(pins, "pins_record", down)
    response = exchange(api, stand_in, web_main_claims)
    assert response.status_code == 503
    assert "access_token" not in response.json()
    assert not UsedToken.objects.exists() and not IdentityPin.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_first_uses_with_different_ids_at_once_one_wins_the_other_is_refused(
    pinning, stand_in, web_main_claims, monkeypatch
):
    """Both requests decide on a snapshot without pins, then write at the same moment (a barrier
    holds each until the other is there): the registry lock orders them, the second finds the
    first one's pin and is refused. Real concurrent transactions: PostgreSQL."""
    require_postgresql()
    from rest_framework.test import APIClient

    real = pins.pins_record
    both_decided = threading.Barrier(2, timeout=20)

    def at_once(new_pins):
        both_decided.wait()
        return real(new_pins)

    monkeypatch.setattr(pins, "pins_record", at_once)
    tokens = {pid: stand_in.mint(stand_in.claims(web_main_claims, project_id=pid)) for pid in ("20", "99")}
    answers: dict[str, int] = {}

    def request(pid: str) -> None:
        try:
            response = post_form(APIClient(), TOKEN, exchange_params(tokens[pid], cases.DEPLOY_WEB))
            answers[pid] = response.status_code
        finally:
            connection.close()

    threads = [threading.Thread(target=request, args=(pid,)) for pid in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(answers.values()) == [200, 400], answers
    winner = next(pid for pid, status in answers.items() if status == 200)
    loser = next(pid for pid in answers if pid != winner)
    assert IdentityPin.objects.get(kind=PROJECT).gitlab_id == winner
    assert IdentityPin.objects.get(kind=NAMESPACE).gitlab_id == "72"
    refusal = AuditEvent.objects.get(outcome="denied")
    assert (refusal.reason, refusal.project_id) == ("identity_changed", loser)
    assert f"pinned to project_id {winner}" in refusal.detail
