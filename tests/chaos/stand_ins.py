"""Misbehaving dependencies on 127.0.0.1, and throwaway copies of the real services, for the
fault-injection tests and ``make chaos``: a server that drips its answer, a port that accepts
and never answers, our own redis-server and our own PostgreSQL cluster on free ports. Each is
started by the caller and stopped by it (only it); none touches the shared services."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0, *, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process for port {port} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class DripServer:
    """An HTTP server that answers every request slowly: ``mode`` ``"body"`` sends its headers
    at once, then the body one byte every ``interval`` seconds; ``"headers"`` drips the status
    line and headers too; ``"silent"`` accepts the connection and never answers. ``hits``
    counts requests (connections)."""

    def __init__(self, *, mode: str = "body", interval: float = 2.0, body: bytes | None = None):
        self.mode = mode
        self.interval = interval
        self.body = body if body is not None else json.dumps({"keys": []}).encode() + b" " * 64
        self.hits = 0
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.hits += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket, data: bytes) -> None:
        for index in range(len(data)):
            if self._stop.wait(self.interval):
                return
            conn.sendall(data[index : index + 1])

    def _answer(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            conn.settimeout(5)
            conn.recv(65536)
            if self.mode == "silent":
                self._stop.wait(600)
                return
            head = (
                f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(self.body)}\r\n\r\n"
            ).encode()
            if self.mode == "headers":
                self._drip(conn, head + self.body)
            else:
                conn.sendall(head)
                self._drip(conn, self.body)

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.close()


class OwnRedis:
    """``redis-server`` of our own on a free loopback port, no persistence."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    def start(self) -> OwnRedis:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port, process=self.process)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def _postgresql_bin() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    return candidates[0].parent if candidates else None


class OwnPostgreSQL:
    """A throwaway PostgreSQL cluster of our own (``initdb`` in a temporary folder) on a free
    port, never the shared server. As root, it runs as the ``postgres`` user."""

    def __init__(self):
        self.bin = _postgresql_bin()
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="rg_chaos_pg_"))
        self.data = self.folder / "data"
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/rg_chaos"
        self._user = None
        if os.geteuid() == 0:
            with contextlib.suppress(KeyError):
                self._user = pwd.getpwnam("postgres")

    def available(self) -> bool:
        return self.bin is not None and (os.geteuid() != 0 or self._user is not None)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        assert self.bin is not None, "available() is checked first"
        return subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            check=check,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            user=self._user.pw_uid if self._user else None,
            group=self._user.pw_gid if self._user else None,
            cwd=self.folder,
            timeout=120,
        )

    def init(self) -> OwnPostgreSQL:
        if self._user is not None:
            os.chown(self.folder, self._user.pw_uid, self._user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "rg_chaos")
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{self.folder}' -c fsync=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "log"), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


class GarbageServer:
    """An HTTP server answering every request with ``status`` and a body no AWS SDK can parse
    (an error document cut short), like a failing endpoint or a proxy's error page."""

    def __init__(self, *, status: int = 500, body: bytes = b"<ErrorResponse><Error><Code>Inter"):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        server = self
        self.status, self.body, self.hits = status, body, 0

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                server.hits += 1
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(server.status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
