"""One statement on PostgreSQL with work of the caller's done while the server runs it
(docs/architecture.md, "The hot path").

A granted token exchange ends in one statement (the replay row and the audit event) whose round
trip -- the server's work and its commit, which waits for the WAL to reach the disk -- is the
largest single wait of the request; and in the RSA signature of its answer, computation that the
statement does not need. :func:`execute_meanwhile` sends the statement, calls ``meanwhile``
while the server works on it, and only then reads the result: the two overlap instead of adding
up.

Everything else is as ``cursor.execute()`` does it: the statement goes through Django's cursor
(its execute wrappers and query log see it, its errors arrive as Django's database errors) and
psycopg's own execution -- the same query, parameters, protocol and result handling. psycopg runs
a statement as a generator that yields each time it has to wait for the socket, and its
connection's ``wait`` drives it; here the generator is driven through :func:`_meanwhile_at_read`,
which calls ``meanwhile`` the first time it waits to read: the query has been sent.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar

from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg.waiting import Wait

Meanwhile = TypeVar("Meanwhile")


def execute_meanwhile(
    connection: BaseDatabaseWrapper, sql: str, params: Sequence[Any], meanwhile: Callable[[], Meanwhile]
) -> tuple[list[tuple[Any, ...]], Meanwhile]:
    """Run ``sql`` with ``params`` on ``connection`` (Django's PostgreSQL connection), calling
    ``meanwhile()`` once the statement is on its way; returns the statement's rows and what
    ``meanwhile`` returned.

    The statement is complete -- committed, in autocommit -- before this returns or raises: when
    ``meanwhile`` raises, the result is still read (the connection stays usable) and then its
    exception propagates; when the statement fails, its error (as Django's) propagates after
    ``meanwhile`` ran. So ``meanwhile`` must not need the statement, and nothing it produces may
    leave the process before this returns."""
    called: list[Meanwhile] = []

    def overlapped(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> None:
        # In place of Django's own last step (CursorWrapper._execute) and psycopg's
        # Cursor.execute(), which this is, with its wait driven through _meanwhile_at_read.
        cursor = context["cursor"].cursor
        connection.validate_no_broken_transaction()
        with connection.wrap_database_errors, cursor.connection.lock:
            cursor.connection.wait(_meanwhile_at_read(cursor._execute_gen(sql, params), meanwhile, called))

    with connection.cursor() as cursor:
        with connection.execute_wrapper(overlapped):  # the innermost wrapper: others wrap it
            cursor.execute(sql, params)
        rows = cursor.fetchall()
    return rows, called[0]


def _meanwhile_at_read(
    statement: Generator[Any, Any, Any], meanwhile: Callable[[], Meanwhile], called: list[Meanwhile]
) -> Generator[Any, Any, Any]:
    """psycopg's generator of one statement, passed through, with ``meanwhile()`` called the first
    time it waits to read (what it returns is in ``called`` after). If ``meanwhile`` raises, the
    statement is still driven to its end, then the exception is raised (the statement's own
    error, if it failed too, with ``meanwhile``'s as its cause)."""
    failure: BaseException | None = None
    try:
        wait = next(statement)
        while True:
            if wait == Wait.R and not called and failure is None:
                try:
                    called.append(meanwhile())
                except BaseException as exc:  # raised once the statement is done
                    failure = exc
            wait = statement.send((yield wait))
    except StopIteration as stop:
        result = stop.value
    except BaseException as error:
        if failure is not None:
            raise error from failure
        raise
    if failure is not None:
        raise failure
    if not called:  # the statement never had to wait (its answer was already there)
        called.append(meanwhile())
    return result
