"""Django's PostgreSQL backend with a health check that costs no round trip (docs/architecture.md,
"The hot path").

Django's ``CONN_HEALTH_CHECKS`` sends ``SELECT 1`` before the first query of every request on a
persistent connection: it would double the round trips of a granted exchange (one statement). A
connection the server has dropped while it sat idle between requests -- a restart,
``pg_terminate_backend``, an idle timeout -- is not silent: the server sends its FATAL message
and closes the socket, so the socket has something to read. An idle connection whose socket has
nothing to read is taken as usable without asking; one with anything to read, or not idle, gets
Django's ``SELECT 1`` as before (it reads what arrived: a dropped connection fails it and is
replaced before the request's query). Like ``SELECT 1`` it cannot see a peer that vanished
without a word (a cut network): that one fails the request's query, and Django replaces the
connection after it.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus


def _nothing_to_read(fileno: int) -> bool:
    poller = select.poll()
    poller.register(fileno, select.POLLIN | select.POLLPRI)
    return not poller.poll(0)  # POLLERR/POLLHUP are reported whatever the mask


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        try:
            quiet = connection.info.transaction_status == TransactionStatus.IDLE and _nothing_to_read(
                connection.fileno()
            )
        except (OSError, ValueError):
            return False
        return True if quiet else super().is_usable()
