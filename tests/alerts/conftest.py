"""Fixtures of the alert tests: a webhook receiver on 127.0.0.1 and moto's IAM."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.cache import cache

from tests.iam.conftest import aws_env, moto_aws  # noqa: F401  (fixtures)


class Receiver:
    """A real HTTP server recording each POSTed JSON body; ``statuses`` are answered in turn
    (200 once they run out)."""

    def __init__(self):
        self.bodies: list[dict] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if status == 200:
                    receiver.bodies.append(json.loads(data))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_webhooks_but_the_tests(settings):
    """Only the webhooks a test configures; no JWKS status left by another test in this process."""
    settings.ROLEGATE_ALERT_WEBHOOKS = []
    cache.clear()
    yield
    cache.clear()
