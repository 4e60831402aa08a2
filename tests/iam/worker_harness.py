"""A real Celery worker for integration tests: a separate process with the production settings
module (not eager) on the test database (PostgreSQL), a Redis broker, and a queue of its own so
that nothing else picks its tasks up. Used by test_worker.py and test_worker_metrics.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from celery import Celery
from django.db import connection

from tests.iam.helpers import ROLEGATE
from tests.services import IN_CI, require_broker, stop_process

ROOT = Path(__file__).resolve().parents[2]


def broker_url(local_db: int) -> str:
    """CI's broker as given; on a laptop, Redis database ``local_db`` of it (never database 0)."""
    url = require_broker()
    if IN_CI:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{local_db}")) if parts.scheme.startswith("redis") else url


def database_url() -> str:
    db = connection.settings_dict
    auth = quote(db["USER"] or "")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"])
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def worker_environment(broker: str, aws_endpoint: str) -> dict[str, str]:
    """Production settings on the test database, the broker, a queue of this test's own."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": broker,
        "CELERY_TASK_DEFAULT_QUEUE": f"rolegate-iam-test-{os.getpid()}-{time.monotonic_ns()}",
        "DJANGO_SECRET_KEY": "worker-test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
        "ROLEGATE_ISSUER": ROLEGATE,
        "AWS_ENDPOINT_URL": aws_endpoint,
        "DJANGO_DEBUG": "0",
    }


@contextmanager
def running_worker(
    env: dict[str, str], log: Path, pool: tuple[str, ...] = ("--pool=solo",)
) -> Iterator[tuple[Celery, str, subprocess.Popen]]:
    """``celery -A portal worker`` on ``env``'s queue, logging to ``log``; yields a client of the
    broker, the queue and the process, stopped (SIGTERM, a warm shutdown) at the end."""
    queue = env["CELERY_TASK_DEFAULT_QUEUE"]
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "portal",
                "worker",
                *pool,
                "-Q",
                queue,
                "-l",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    client = Celery(broker=env["CELERY_BROKER_URL"])
    try:
        yield client, queue, process
    finally:
        stop_process(process, timeout=20)
        client.close()


def wait_for(predicate: Callable[[], object], *, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            pytest.fail(f"the worker exited:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"the worker did not finish in {timeout}s:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
