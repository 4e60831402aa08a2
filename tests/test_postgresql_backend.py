"""portal/postgresql: Django's PostgreSQL backend whose per-request health check asks the server
only when the connection's socket shows that something happened."""

from __future__ import annotations

import select

import psycopg
import pytest
from django.db import close_old_connections, connection

from tests.services import count_health_checks, require_postgresql

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def asked(monkeypatch):
    """Each ``SELECT 1`` health check that reaches the server."""
    calls: list[str] = []
    count_health_checks(monkeypatch, calls)
    return calls


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def next_request() -> None:
    """What Django does between two requests on a persistent connection."""
    close_old_connections()  # request_finished: the next request's first query checks the health
    close_old_connections()  # request_started


def other_connection() -> psycopg.Connection:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True)


def wait_readable(fileno: int) -> None:
    poller = select.poll()
    poller.register(fileno, select.POLLIN)
    assert poller.poll(5000), "the server's goodbye did not arrive"


def test_an_idle_healthy_connection_is_used_without_asking_the_server(asked, settings):
    require_postgresql()
    assert connection.settings_dict["CONN_HEALTH_CHECKS"]
    pid = backend_pid()
    for _ in range(3):
        next_request()
        assert backend_pid() == pid
    assert asked == []


def test_a_connection_the_server_dropped_is_replaced_before_the_requests_query(asked):
    require_postgresql()
    pid = backend_pid()
    with other_connection() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    wait_readable(connection.connection.fileno())
    next_request()
    # Without the check this query would fail with "terminating connection" (OperationalError).
    assert backend_pid() != pid
    assert asked == ["health check"]  # the socket had the server's message: the server was asked, and failed


def test_a_socket_with_something_else_to_read_asks_and_keeps_a_healthy_connection(asked):
    """A notification is something to read too: the server is asked (SELECT 1), answers, and
    the connection stays."""
    require_postgresql()
    pid = backend_pid()
    with connection.cursor() as cursor:
        cursor.execute("LISTEN rolegate_backend_test")
    with other_connection() as other:
        other.execute("NOTIFY rolegate_backend_test")
    wait_readable(connection.connection.fileno())
    next_request()
    assert backend_pid() == pid
    assert asked == ["health check"]
    with connection.cursor() as cursor:
        cursor.execute("UNLISTEN *")
