"""Rolegate's gunicorn worker (portal/gunicorn_worker.py): a busy worker leaves new connections to
a free one, and a thread serves a kept-alive connection's next request itself."""

from __future__ import annotations

import http.client
import io
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from gunicorn.config import Config

from portal import gunicorn_worker
from portal.gunicorn_worker import NEXT_REQUEST_WAIT, RolegateWorker
from tests.exchange.servers import RolegateServer
from tests.services import free_port

WORKER = "portal.gunicorn_worker.RolegateWorker"


def a_worker(threads: int) -> RolegateWorker:
    cfg = Config()
    cfg.set("threads", threads)
    worker = RolegateWorker(0, 0, [], None, 30, cfg, SimpleNamespace())
    worker.poller = selectors.DefaultSelector()
    worker.method_queue.init()
    return worker


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock
    sock.close()


def listening(worker: RolegateWorker, listener: socket.socket) -> bool:
    try:
        worker.poller.get_key(listener)
    except KeyError:
        return False
    return True


@pytest.mark.parametrize(("in_hand", "accepts"), [(0, True), (1, True), (2, False), (3, False)])
def test_a_worker_listens_only_while_a_thread_is_free(listener, in_hand, accepts):
    worker = a_worker(threads=2)
    worker.sockets = [listener]
    worker.in_hand = in_hand
    worker.wait_for_and_dispatch_events(0)
    assert listening(worker, listener) is accepts


def test_a_worker_listens_again_once_a_thread_is_free(listener):
    worker = a_worker(threads=1)
    worker.sockets = [listener]
    worker.in_hand = 1
    worker.wait_for_and_dispatch_events(0)
    assert not listening(worker, listener)
    worker.in_hand = 0
    worker.wait_for_and_dispatch_events(0)
    assert listening(worker, listener)


def test_a_stopping_worker_does_not_listen(listener):
    worker = a_worker(threads=2)
    worker.sockets = [listener]
    worker.alive = False
    worker.wait_for_and_dispatch_events(0)
    assert not listening(worker, listener)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def a_connection(sock: socket.socket, buffered: bytes = b"") -> SimpleNamespace:
    return SimpleNamespace(sock=sock, parser=SimpleNamespace(unreader=SimpleNamespace(buf=io.BytesIO(buffered))))


def test_the_next_request_is_served_when_it_is_in_the_socket(pair):
    server, client = pair
    client.sendall(b"GET / HTTP/1.1\r\n")
    assert a_worker(threads=2)._next_request_here(a_connection(server))


def test_the_next_request_is_served_when_it_was_read_ahead(pair):
    server, _ = pair
    assert a_worker(threads=2)._next_request_here(a_connection(server, b"GET / HTTP/1.1\r\n"))


def test_a_connection_the_client_closed_goes_to_gunicorn_to_end(pair):
    server, client = pair
    client.close()
    assert a_worker(threads=2)._next_request_here(a_connection(server))


def test_a_quiet_connection_goes_back_to_the_poller_after_the_wait(pair):
    server, _ = pair
    began = time.monotonic()
    assert not a_worker(threads=2)._next_request_here(a_connection(server))
    assert time.monotonic() - began >= NEXT_REQUEST_WAIT * 0.9


def test_the_wait_ends_on_time_whatever_the_slice(pair, monkeypatch):
    """poll() rounds a timeout up to a whole millisecond: the wait is bounded by its deadline, not
    by a count of slices (a hundred 0.2 ms slices took about 110 ms)."""
    monkeypatch.setattr(gunicorn_worker, "NEXT_REQUEST_WAIT", 0.02)
    monkeypatch.setattr(gunicorn_worker, "WAIT_SLICE", 0.0002)
    server, _ = pair
    began = time.monotonic()
    assert not a_worker(threads=2)._next_request_here(a_connection(server))
    assert 0.018 <= time.monotonic() - began < 0.06


def test_a_connection_goes_back_to_the_poller_when_another_waits_for_a_thread(pair):
    server, client = pair
    client.sendall(b"GET / HTTP/1.1\r\n")
    worker = a_worker(threads=2)
    worker.in_hand = 3  # two running, one waiting for a thread
    assert not worker._next_request_here(a_connection(server))


def test_a_request_waiting_for_a_thread_ends_the_wait(pair, monkeypatch):
    """Checked all along the wait, not only at its start: another connection's request that
    arrives meanwhile gets this thread, even if this connection's next request comes too."""
    monkeypatch.setattr(gunicorn_worker, "NEXT_REQUEST_WAIT", 2.0)
    monkeypatch.setattr(gunicorn_worker, "WAIT_SLICE", 0.01)
    server, client = pair
    worker = a_worker(threads=2)
    worker.in_hand = 1
    answer: list[bool] = []
    waiting = threading.Thread(target=lambda: answer.append(worker._next_request_here(a_connection(server))))
    waiting.start()
    time.sleep(0.1)
    worker.in_hand = 3  # another connection's request, handed to the pool, waits for a thread
    client.sendall(b"GET / HTTP/1.1\r\n")
    waiting.join(timeout=5)
    assert answer == [False]


def test_a_connection_waiting_to_be_accepted_ends_the_wait(pair, listener):
    """A new connection in the kernel's queue: the thread gives way even though its own
    connection's next request is here (a busy worker does not accept, so without this kept-alive
    clients could keep a new one out for as long as they keep every thread busy)."""
    server, client = pair
    worker = a_worker(threads=2)
    worker.sockets = [listener]
    with socket.create_connection(listener.getsockname()):
        client.sendall(b"GET / HTTP/1.1\r\n")
        assert not worker._next_request_here(a_connection(server))
        assert not worker._next_request_here(a_connection(server, b"GET / HTTP/1.1\r\n"))
    accepted, _ = listener.accept()
    accepted.close()
    assert worker._next_request_here(a_connection(server))


def test_a_stopping_worker_serves_no_next_request_itself(pair):
    server, client = pair
    client.sendall(b"GET / HTTP/1.1\r\n")
    worker = a_worker(threads=2)
    worker.alive = False
    assert not worker._next_request_here(a_connection(server))


# --- a real gunicorn -------------------------------------------------------------------------


class Gunicorn(RolegateServer):
    """The probe app (tests/web_probe_app.py) under gunicorn with ``worker_class``."""

    def __init__(self, *, workers: int, threads: int, worker_class: str = WORKER):
        super().__init__(
            port=free_port(),
            env={},
            workers=workers,
            threads=threads,
            app="tests.web_probe_app:app",
            worker_class=worker_class,
        )
        try:
            self.wait_ready()
        except RuntimeError:
            self.stop()
            raise

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def get(self, path: str) -> str:
        connection = self.connect()
        try:
            connection.request("GET", path)
            return connection.getresponse().read().decode()
        finally:
            connection.close()


@pytest.fixture
def two_workers_one_thread() -> Iterator[Gunicorn]:
    server = Gunicorn(workers=2, threads=1)
    try:
        # Both workers up: two requests at once are answered by two processes.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            first = server.connect()
            first.request("GET", "/?sleep=0.3")
            time.sleep(0.05)
            second = server.get("/")
            if first.getresponse().read().decode() != second:
                break
        yield server
    finally:
        server.stop()


def test_a_new_connection_goes_to_the_worker_with_a_free_thread(two_workers_one_thread):
    """gthread's workers race for every new connection, busy or not: about half the time the busy
    one wins and the request waits behind the slow one. Ten tries in a row all go to the free one."""
    for _ in range(10):
        slow = two_workers_one_thread.connect()
        slow.request("GET", "/?sleep=0.5")
        time.sleep(0.15)  # the slow request is running: its worker's one thread is taken
        began = time.monotonic()
        fast_pid = two_workers_one_thread.get("/")
        waited = time.monotonic() - began
        slow_pid = slow.getresponse().read().decode()
        slow.close()
        assert fast_pid != slow_pid
        assert waited < 0.25


def test_kept_alive_clients_do_not_keep_a_new_connection_out():
    """One worker, one thread, a client sending requests back to back on its connection: a new
    connection is answered at once, not when the busy client stops."""
    server = Gunicorn(workers=1, threads=1)
    stop = threading.Event()

    def busy() -> None:
        connection = server.connect()
        while not stop.is_set():
            connection.request("GET", "/")
            connection.getresponse().read()
        connection.close()

    hammering = threading.Thread(target=busy)
    try:
        hammering.start()
        time.sleep(0.3)
        began = time.monotonic()
        server.get("/")
        assert time.monotonic() - began < 1.0
    finally:
        stop.set()
        hammering.join(timeout=10)
        server.stop()


def test_a_kept_alive_connection_serves_requests_in_a_row_and_pipelined():
    server = Gunicorn(workers=1, threads=2)
    try:
        connection = server.connect()
        pids = set()
        for _ in range(50):
            connection.request("GET", "/")
            response = connection.getresponse()
            assert response.status == 200
            pids.add(response.read().decode())
        assert len(pids) == 1
        connection.close()
        # Two requests in one write: the second is read ahead with the first.
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.count(b"HTTP/1.1 200 OK") == 2
    finally:
        server.stop()
