"""portal/postgresql/overlap: one statement, and the caller's work done while the server runs it
(the token endpoint signs its answer while its audit statement is on the database)."""

from __future__ import annotations

import time

import pytest
from django.db import DataError, connection
from django.test.utils import CaptureQueriesContext
from psycopg.waiting import Wait

from portal.postgresql.overlap import _meanwhile_at_read, execute_meanwhile
from tests.services import require_postgresql
from tests.test_postgresql_backend import backend_pid, other_connection

pytestmark = pytest.mark.django_db(transaction=True)

LOCK = 8_693_001  # an advisory lock key of these tests' own


def statement(*waits, result="done"):
    """A stand-in for psycopg's generator of one statement: yields ``waits``, returns ``result``."""
    for wait in waits:
        _ready = yield wait  # what psycopg's wait sends back: the socket's readiness
    return result


def drive(gen, ready=1):
    """What psycopg's ``wait`` does with such a generator (every wait is answered at once)."""
    try:
        next(gen)
        while True:
            gen.send(ready)
    except StopIteration as stop:
        return stop.value


# --- the generator: meanwhile at the first wait to read ---------------------------------------


def test_meanwhile_runs_once_at_the_first_wait_to_read_and_the_statement_runs_to_its_end():
    order: list[str] = []

    def traced():
        for wait in (Wait.RW, Wait.RW, Wait.R, Wait.R, Wait.R):
            order.append(f"wait {wait.name}")
            yield wait
        return "rows"

    called: list[str] = []
    result = drive(_meanwhile_at_read(traced(), lambda: order.append("meanwhile") or "signed", called))
    assert result == "rows" and called == ["signed"]
    assert order == ["wait RW", "wait RW", "wait R", "meanwhile", "wait R", "wait R"]


def test_a_statement_that_never_waits_to_read_still_gets_its_meanwhile():
    called: list[int] = []
    assert drive(_meanwhile_at_read(statement(Wait.RW), lambda: 1, called)) == "done"
    assert called == [1]


def test_a_meanwhile_that_raises_is_raised_only_once_the_statement_has_finished():
    finished: list[bool] = []

    def traced():
        yield Wait.R
        yield Wait.R
        finished.append(True)
        return "rows"

    def boom():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        drive(_meanwhile_at_read(traced(), boom, []))
    assert finished == [True]


def test_when_both_fail_the_statements_error_is_raised_with_meanwhiles_as_its_cause():
    def failing():
        yield Wait.R
        raise ValueError("the statement failed")

    def boom():
        raise RuntimeError("boom")

    with pytest.raises(ValueError, match="the statement failed") as raised:
        drive(_meanwhile_at_read(failing(), boom, []))
    assert isinstance(raised.value.__cause__, RuntimeError)


# --- on PostgreSQL ------------------------------------------------------------------------------


def test_meanwhile_runs_while_the_server_works_on_the_statement():
    """The statement waits for an advisory lock that another connection holds; ``meanwhile``
    sees it waiting on the server and only then lets it go. Run before the statement, it would
    never see it; after, the statement would wait for the lock (here: fail on lock_timeout)."""
    require_postgresql()
    pid = backend_pid()
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '10s'")
    other = other_connection()
    try:
        other.execute("SELECT pg_advisory_lock(%s)", (LOCK,))

        def release_once_it_waits() -> bool:
            deadline, seen = time.monotonic() + 10, False
            while not seen and time.monotonic() < deadline:
                seen = bool(
                    other.execute(
                        "SELECT 1 FROM pg_locks WHERE pid = %s AND locktype = 'advisory' AND NOT granted", (pid,)
                    ).fetchone()
                )
                time.sleep(0.01)
            other.execute("SELECT pg_advisory_unlock(%s)", (LOCK,))
            return seen

        rows, seen = execute_meanwhile(
            connection, "SELECT 7 FROM (SELECT pg_advisory_xact_lock(%s)) AS locked", [LOCK], release_once_it_waits
        )
    finally:
        other.close()
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    assert seen, "meanwhile ran when the statement was not on the server"
    assert rows == [(7,)]


def test_rows_come_back_as_psycopg_reads_them():
    require_postgresql()
    rows, answer = execute_meanwhile(
        connection,
        "SELECT %s::bigint, %s::boolean, %s::text, NULL::int UNION ALL SELECT 2, false, 'b', 5",
        [1, True, "a"],
        lambda: "answer",
    )
    assert rows == [(1, True, "a", None), (2, False, "b", 5)] and answer == "answer"


def test_a_meanwhile_that_raises_leaves_the_statement_done_and_the_connection_usable():
    require_postgresql()
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE overlap_probe (v int)")

    def boom():
        raise RuntimeError("signing failed")

    with pytest.raises(RuntimeError, match="signing failed"):
        execute_meanwhile(connection, "INSERT INTO overlap_probe VALUES (%s) RETURNING v", [7], boom)
    with connection.cursor() as cursor:
        cursor.execute("SELECT v FROM overlap_probe")
        assert cursor.fetchall() == [(7,)]  # committed (autocommit), and the connection answers


def test_a_failing_statement_raises_djangos_error_after_meanwhile_and_the_connection_stays_usable():
    require_postgresql()
    called: list[str] = []
    with pytest.raises(DataError):
        execute_meanwhile(connection, "SELECT 1 / %s", [0], lambda: called.append("meanwhile"))
    assert called == ["meanwhile"]
    rows, _ = execute_meanwhile(connection, "SELECT %s", [1], lambda: None)
    assert rows == [(1,)]


def test_djangos_query_log_and_execute_wrappers_see_the_statement():
    require_postgresql()
    wrapped: list[str] = []

    def outer(execute, sql, params, many, context):
        wrapped.append(sql)
        return execute(sql, params, many, context)

    with CaptureQueriesContext(connection) as queries, connection.execute_wrapper(outer):
        execute_meanwhile(connection, "SELECT %s::text AS probe", ["logged"], lambda: None)
    assert wrapped == ["SELECT %s::text AS probe"]
    assert [q["sql"] for q in queries.captured_queries] == ["SELECT 'logged'::text AS probe"]
