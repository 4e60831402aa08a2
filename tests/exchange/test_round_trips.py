"""The hot path's database round trips (docs/architecture.md, "The hot path"): a granted
``/api/v1/token`` exchange costs 1 on PostgreSQL -- one statement that checks the registry is
still at the version the process decided on and writes the replay row and the audit event
together; the registry version is not read first. The per-request health check asks the server
only when the connection's socket shows something happened (portal/postgresql). BEGIN and COMMIT
are round trips too, so none is allowed."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from django.db import close_old_connections, connection
from django.test.utils import CaptureQueriesContext

from exchange.models import AuditEvent, UsedToken
from tests.exchange import cases
from tests.exchange.conftest import exchange_params, post_form
from tests.services import count_health_checks, require_postgresql

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "/api/v1/token"


@contextmanager
def round_trips(monkeypatch):
    """What reaches the database: every statement, BEGIN and COMMIT included (Django's
    CaptureQueriesContext logs transaction management too), and each health check that asks
    the server (Django's ``SELECT 1``)."""
    counted: list[str] = []
    count_health_checks(monkeypatch, counted)
    with CaptureQueriesContext(connection) as queries:
        yield counted
    counted.extend(query["sql"][:60] for query in queries.captured_queries)


def the_one_statement(counted: list[str]) -> None:
    """Exactly one round trip: the guarded statement (no version read, BEGIN or health check)."""
    assert len(counted) == 1, counted
    assert counted[0].startswith("WITH fresh AS (SELECT 1 FROM"), counted


def test_a_granted_token_exchange_costs_one_round_trip(api, registry, stand_in, web_main_claims, monkeypatch):
    require_postgresql()
    warm = post_form(api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.DEPLOY_WEB))
    assert warm.status_code == 200  # the registry snapshot, JWKS and signing key are cached now
    token = stand_in.mint(stand_in.claims(web_main_claims))
    with round_trips(monkeypatch) as counted:
        close_old_connections()  # what request_started does under gunicorn (the test client skips it)
        response = post_form(api, TOKEN, exchange_params(token, cases.DEPLOY_WEB))
    assert response.status_code == 200
    the_one_statement(counted)
    event = AuditEvent.objects.get(request_id=response["X-Request-ID"])
    assert event.outcome == "granted" and event.minted_jti
    assert UsedToken.objects.filter(jti=event.jti).count() == 1


def test_the_one_statement_refuses_a_replay_and_writes_only_the_refusal(api, registry, stand_in, web_main_claims):
    require_postgresql()
    token = stand_in.mint(stand_in.claims(web_main_claims))
    first = post_form(api, TOKEN, exchange_params(token, cases.DEPLOY_WEB))
    second = post_form(api, TOKEN, exchange_params(token, cases.DEPLOY_WEB))
    assert first.status_code == 200 and second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    assert AuditEvent.objects.get(request_id=second["X-Request-ID"]).reason == "replay"
    assert AuditEvent.objects.filter(outcome="granted").count() == 1
    assert UsedToken.objects.count() == 1


def test_the_one_statement_fails_closed_and_leaves_the_token_unspent(
    api, registry, stand_in, web_main_claims, monkeypatch
):
    """A real failure of the audit insert inside the statement (the request id is taken): 503,
    no token, and the replay row is not written either (one statement, all or nothing)."""
    require_postgresql()
    taken = post_form(api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.DEPLOY_WEB))
    assert taken.status_code == 200
    from portal import middleware

    token = stand_in.mint(stand_in.claims(web_main_claims))
    with monkeypatch.context() as patch:
        patch.setattr(middleware, "uuid", SimpleNamespace(uuid4=lambda: uuid.UUID(taken["X-Request-ID"])))
        response = post_form(api, TOKEN, exchange_params(token, cases.DEPLOY_WEB))
    assert response.status_code == 503
    assert "access_token" not in response.json()
    assert UsedToken.objects.count() == 1  # only the first request's row
    again = post_form(api, TOKEN, exchange_params(token, cases.DEPLOY_WEB))
    assert again.status_code == 200  # the token was not spent: the job may retry


def test_once_pinned_a_pinning_mapping_costs_no_round_trip_more(api, registry, stand_in, web_main_claims, monkeypatch):
    """Pin on first use (docs/trust-model.md#identity-pins): the first grant writes the pins and
    decides again on the registry with them, which the process's snapshot then holds; from then on
    checking the pins is a lookup in the snapshot, so a granted exchange still costs 1 round trip."""
    require_postgresql()
    from mappings import services
    from mappings.models import IdentityPin, Mapping

    services.registry_update(Mapping.objects.get(name="web-main-deploy"), actor="tests", pin_identity=True)
    # The first use pins, then decides again on the registry with its pins: the process's snapshot has them.
    warm = post_form(api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), cases.DEPLOY_WEB))
    assert warm.status_code == 200
    assert IdentityPin.objects.count() == 2
    token = stand_in.mint(stand_in.claims(web_main_claims))
    with round_trips(monkeypatch) as counted:
        close_old_connections()
        response = post_form(api, TOKEN, exchange_params(token, cases.DEPLOY_WEB))
    assert response.status_code == 200
    the_one_statement(counted)
    from mappings import pins

    monkeypatch.setattr(pins, "pins_record", lambda new_pins: pytest.fail("a pin write was tried"))
    refused = stand_in.mint(stand_in.claims(web_main_claims, project_id="99"))
    response = post_form(api, TOKEN, exchange_params(refused, cases.DEPLOY_WEB))
    assert response.status_code == 400 and response.json()["error"] == "invalid_target"  # from the snapshot


@pytest.mark.parametrize("junk", [False, True], ids=["no mapping", "not a token"])
def test_a_refusal_costs_two_round_trips_one_without_a_jwt(
    api, registry, stand_in, feature_mr_claims, monkeypatch, junk
):
    """A refusal decided from the snapshot stands only once the version is read unchanged, then
    its event is one INSERT in autocommit: no BEGIN/COMMIT around it (every refused request,
    hostile ones included, pays this). A subject token that is not a JWT is refused before
    anything that depends on the registry: its INSERT alone."""
    require_postgresql()
    warm = post_form(api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(feature_mr_claims)), cases.DEPLOY_WEB))
    assert warm.status_code == 400
    token = "not-a-jwt" if junk else stand_in.mint(stand_in.claims(feature_mr_claims))
    with round_trips(monkeypatch) as counted:
        close_old_connections()
        response = post_form(api, TOKEN, exchange_params(token, cases.DEPLOY_WEB))
    assert response.status_code == 400
    if junk:
        assert len(counted) == 1 and counted[0].startswith("INSERT INTO"), counted
    else:
        assert len(counted) == 2, counted
        assert counted[0].startswith('SELECT "version", "stamp"') and counted[1].startswith("INSERT INTO"), counted
    event = AuditEvent.objects.get(request_id=response["X-Request-ID"], outcome="denied")
    assert event.reason == ("malformed_token" if junk else "no_matching_mapping")


def test_a_refusal_before_the_token_costs_one_or_two_round_trips(api, db, monkeypatch):
    """Refused before a token is read (here: no subject token), a client's requests share one
    aggregate event a minute: the first costs the UPDATE that finds no event and the INSERT, the
    next ones the UPDATE that counts them; no BEGIN/COMMIT or savepoint around either."""
    require_postgresql()
    for expected in (["UPDATE", "INSERT"], ["UPDATE"], ["UPDATE"]):
        with round_trips(monkeypatch) as counted:
            close_old_connections()
            response = post_form(api, TOKEN, {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange"})
        assert response.status_code == 400
        assert [statement.split()[0] for statement in counted] == expected, counted
    [event] = AuditEvent.objects.filter(reason="invalid_request")
    assert event.count == 3
