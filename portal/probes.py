"""Liveness and readiness probes (docs/operations.md "Probes").

``/healthz`` says the process answers (no I/O). ``/readyz`` checks that every dependency a
request needs is reachable, each within ``ROLEGATE_READYZ_TIMEOUT`` seconds, and names each one
in its JSON answer; 503 names the failing ones.

Both are answered by :class:`ProbeMiddleware`, before host validation, HTTPS redirects and
sessions: the kubelet and Docker probe a pod by its IP address over plain http, a Host that
``DJANGO_ALLOWED_HOSTS`` rightly refuses everywhere else.

The checks are data (:data:`CHECKS`) and :func:`run_checks` returns typed results with their
durations, so a metrics exporter can publish the same readiness without probing twice.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.db import connections
from django.http import HttpResponse, JsonResponse

logger = logging.getLogger("rolegate.probes")

# A check returns None when its dependency answered, or raises; Skipped means "not used here".


class Skipped(Exception):
    """The dependency is not configured in this deployment (e.g. no broker: tasks run in-process)."""


def check_database(alias: str = "default") -> None:
    connection = connections[alias]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        # The check runs on a short-lived thread: its connection must not outlive it.
        connection.close()


def check_cache() -> None:
    cache = caches["default"]
    key = f"readyz:{uuid.uuid4().hex}"
    cache.set(key, "1", timeout=10)
    if cache.get(key) != "1":
        raise RuntimeError("the cache did not return the value just written")
    cache.delete(key)


def check_broker() -> None:
    url = settings.CELERY_BROKER_URL
    if not url:
        raise Skipped("no CELERY_BROKER_URL: tasks run in-process")
    from kombu import Connection

    timeout = settings.ROLEGATE_READYZ_TIMEOUT
    with Connection(url, connect_timeout=timeout, transport_options={"socket_timeout": timeout}) as connection:
        connection.ensure_connection(max_retries=1, timeout=timeout)


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[], None]


CHECKS: tuple[Check, ...] = (
    Check("database", check_database),
    Check("cache", check_cache),
    Check("broker", check_broker),
)


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # "ok", "failing" or "skipped"
    seconds: float
    error: str | None = None  # the exception's class name; the message goes to the log only

    @property
    def ok(self) -> bool:
        return self.status != "failing"


def run_checks(checks: tuple[Check, ...] = CHECKS, *, timeout: float | None = None) -> list[CheckResult]:
    """Run every check at once on its own thread; a check that has not answered within
    ``timeout`` seconds is failing (its thread is left to finish on its own)."""
    timeout = settings.ROLEGATE_READYZ_TIMEOUT if timeout is None else timeout
    executor = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="readyz")
    started = time.monotonic()
    futures = [(check, executor.submit(check.run)) for check in checks]
    results = []
    for check, future in futures:
        remaining = max(0.0, timeout - (time.monotonic() - started))
        try:
            future.result(timeout=remaining)
            status, error = "ok", None
        except Skipped:
            status, error = "skipped", None
        except FutureTimeout:
            status, error = "failing", "Timeout"
            logger.warning("readiness: %s did not answer within %.1f s", check.name, timeout)
        except Exception as exc:
            status, error = "failing", type(exc).__name__
            logger.warning("readiness: %s is failing: %s: %s", check.name, type(exc).__name__, exc)
        results.append(CheckResult(check.name, status, round(time.monotonic() - started, 4), error))
    executor.shutdown(wait=False, cancel_futures=True)
    return results


def healthz_response() -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


def readyz_response() -> JsonResponse:
    results = run_checks()
    failing = [r.name for r in results if not r.ok]
    checks = {}
    for r in results:
        checks[r.name] = {"status": r.status, "seconds": r.seconds, **({"error": r.error} if r.error else {})}
    body = {"status": "unavailable" if failing else "ready", "failing": failing, "checks": checks}
    response = JsonResponse(body, status=503 if failing else 200)
    response["Cache-Control"] = "no-store"
    return response


PROBES = {"/healthz": healthz_response, "/readyz": readyz_response}


class ProbeMiddleware:
    """Answer GET/HEAD ``/healthz`` and ``/readyz`` before anything looks at the Host header."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        probe = PROBES.get(request.path_info)
        if probe is not None and request.method in ("GET", "HEAD"):
            return probe()
        return self.get_response(request)
