"""Real services for integration tests: skip on a laptop without them, fail in CI (CI=true)."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest
from django.db import connection

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    """Skip the test when ``condition`` is false, except in CI where that is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def count_health_checks(monkeypatch, calls: list[str]) -> None:
    """Append ``"health check"`` to ``calls`` for each health check of Django's PostgreSQL backend
    that reaches the server (its ``SELECT 1``; portal/postgresql asks only when it must)."""
    from django.db.backends.postgresql import base as django_postgresql

    real = django_postgresql.DatabaseWrapper.is_usable

    def is_usable(self):
        calls.append("health check")
        return real(self)

    monkeypatch.setattr(django_postgresql.DatabaseWrapper, "is_usable", is_usable)


def require_postgresql() -> None:
    require(connection.vendor == "postgresql", "this test needs PostgreSQL (set DATABASE_URL)")


def require_broker() -> str:
    from django.conf import settings

    url = getattr(settings, "TEST_BROKER_URL", None)
    require(bool(url), "this test needs a Celery broker (set CELERY_BROKER_URL)")
    return str(url)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, *, process: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    """Wait until ``process`` (started by the test) listens on ``port``; fail if it exits or is late."""
    deadline = time.monotonic() + timeout
    while not port_open(host, port):
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} did not start on {host}:{port}")
        time.sleep(0.05)


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """End a process the test started (and only it): terminate, then kill if it lingers."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
