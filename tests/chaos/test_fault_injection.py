"""Fault injection, short: Rolegate under gunicorn with exchange load while PostgreSQL restarts,
Redis (cache) or the Celery broker stops, STS or GitLab's JWKS is slow or unreachable. Never a
500, never a grant without its audit event, and the service recovers once the dependency is
back. ``make chaos`` runs the same scenarios longer and prints the table."""

from __future__ import annotations

import pytest

from tests.chaos.harness import SCENARIOS, Stack, Timing
from tests.chaos.stand_ins import OwnPostgreSQL, OwnRedis
from tests.services import require

pytestmark = pytest.mark.integration

# The load after the fault ends a second after the service recovered (at most 10 s: a slower
# recovery still counts, on a loaded machine). ``make chaos`` runs its full phases.
SHORT = Timing(before=1.0, fault=2.5, after=10.0, settle=1.0)


@pytest.fixture(scope="module")
def stack():
    require(OwnPostgreSQL().available(), "fault injection needs PostgreSQL's initdb (/usr/lib/postgresql/*/bin)")
    require(OwnRedis.available(), "fault injection needs redis-server")
    built = Stack()
    yield built
    built.close()


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_no_500_and_no_unaudited_grant(stack, name):
    figures = SCENARIOS[name](stack, SHORT)
    print(figures.row())
    assert figures.sent > 0
    assert figures.server_errors == 0, figures.row()
    assert figures.unaudited_grants == 0, figures.row()
    assert figures.statuses[0] == 0, figures.row()  # every request got an answer
    assert figures.recovery_seconds is not None, figures.row()  # back to work once it returned
    if name in ("postgresql", "sts-down", "jwks-down", "jwks-slow"):
        assert figures.statuses[503] > 0, figures.row()  # the fault was felt, as a 503
    if name in ("redis", "broker"):
        assert figures.statuses.keys() == {200}, figures.row()  # nothing the exchange needs
        assert "during the outage: exit 0" in figures.notes[0], figures.row()
