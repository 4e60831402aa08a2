"""Rolegate's gunicorn worker: gunicorn's threaded worker (gthread), with two changes for
connections that stay open (docs/operations.md, "Web processes").

1. **A worker accepts a connection only while it has a thread free.** gthread accepts whenever
   its poller sees the listening socket readable, however busy its threads are, and a kept-alive
   connection then stays with the worker that accepted it. Clients that keep connections open --
   a proxy's upstream pool, a CI runner's HTTP session, a load tester -- so end up piled on one
   worker while another idles: measured with 16 kept-alive clients on 3 workers, 10/3/3 and 8/5/3
   connections, and the crowded worker's requests waited for its threads. With this change a
   busy worker leaves a new connection in the kernel's queue for a worker that can serve it now.
2. **A thread serves a kept-alive connection's next request itself** when it arrives within
   :data:`NEXT_REQUEST_WAIT`, no other request is waiting for a thread and no new connection is
   waiting to be accepted (which change 1 would otherwise leave waiting for as long as the
   kept-alive clients keep every thread busy). gthread hands every kept-alive connection back to
   its poller thread after each response (a pipe write, a poll, a thread-pool submit, and the
   interpreter lock passed between threads twice), even when the client's next request is
   already in the socket.

Everything else -- parsing, timeouts, graceful shutdown, ``max_requests`` -- is gunicorn's.
"""

from __future__ import annotations

import math
import select
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker  # type: ignore[import-untyped]

# How long a thread waits for the next request on a connection it just answered, before handing
# the connection back to the poller, and how often during that wait it checks whether someone
# else needs it. poll() counts whole milliseconds (it rounds a shorter timeout up to one), so the
# slice is one: a request that arrives on another connection waits at most that long for a
# thread that is only waiting. (The figures in README "Performance" were measured with these.)
NEXT_REQUEST_WAIT = 0.008
WAIT_SLICE = 0.001


class RolegateWorker(ThreadWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Connections handed to the thread pool and not finished: running or waiting for a thread.
        # Changed on the main thread only (enqueue_req and finish_request run there).
        self.in_hand = 0

    def enqueue_req(self, conn: Any) -> None:
        self.in_hand += 1
        super().enqueue_req(conn)

    def finish_request(self, conn: Any, fs: Any) -> None:
        self.in_hand -= 1
        super().finish_request(conn, fs)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        # Before each wait: listen for new connections only while a thread is free. gunicorn's
        # own check (worker_connections) still applies; a stopping worker stays deaf.
        if self.alive:
            self.set_accept_enabled(self.nr_conns < self.worker_connections and self.in_hand < self.cfg.threads)
        super().wait_for_and_dispatch_events(timeout)

    def handle(self, conn: Any) -> Any:
        result = super().handle(conn)
        while result is True and self._next_request_here(conn):
            result = super().handle(conn)
        return result

    def _next_request_here(self, conn: Any) -> bool:
        """Whether this thread should serve ``conn``'s next request: the worker is running, no
        other request waits for a thread, no new connection waits to be accepted -- all checked
        again every :data:`WAIT_SLICE` of the wait, so that whatever arrives meanwhile is not
        kept waiting by a thread that could serve it -- and the request is here or arrives in
        time. A client that closes the connection instead also makes it readable: gunicorn then
        ends it."""
        poller = select.poll()
        for listener in self.sockets:  # readable: a connection waits in the kernel's queue
            poller.register(listener, select.POLLIN)
        if conn.parser.unreader.buf.getvalue():  # read ahead with the previous request
            return self._free_to_wait() and not poller.poll(0)
        own = conn.sock.fileno()
        poller.register(own, select.POLLIN)
        deadline = time.monotonic() + NEXT_REQUEST_WAIT
        while self._free_to_wait():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready = poller.poll(math.ceil(min(left, WAIT_SLICE) * 1000))
            if ready:
                return self._free_to_wait() and all(fd == own for fd, _ in ready)
        return False

    def _free_to_wait(self) -> bool:
        return bool(self.alive) and self.in_hand <= self.cfg.threads
