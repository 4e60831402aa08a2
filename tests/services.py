"""Real services for integration tests: skip on a laptop without them, fail in CI (CI=true)."""

from __future__ import annotations

import os
import socket

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


def require_postgresql() -> None:
    require(connection.vendor == "postgresql", "this test needs PostgreSQL (set DATABASE_URL)")


def require_broker() -> str:
    from django.conf import settings

    url = getattr(settings, "TEST_BROKER_URL", None)
    require(bool(url), "this test needs a Celery broker (set CELERY_BROKER_URL)")
    return url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
