"""The Celery worker's ``GET /metrics`` (docs/operations.md "Metrics").

IAM syncs run in the worker, so ``rolegate_iam_role_syncs_total`` is counted there, in the pool's
child processes, never in the web processes that answer the web's ``/metrics``. With
``ROLEGATE_WORKER_METRICS_PORT`` set (off by default), ``celery -A portal worker``:

- gets a new, empty folder as ``PROMETHEUS_MULTIPROC_DIR`` (:func:`prepare`, called by
  ``portal/celery.py`` while Celery's command line loads the app, before anything imports
  prometheus_client, which reads the variable once); every child of the prefork pool inherits
  it and writes its counters to files named by its pid. A folder of its own, whatever the
  environment said: a ``PROMETHEUS_MULTIPROC_DIR`` meant for gunicorn on the same host would mix
  the two servers' counts. It is removed when the worker's main process exits;
- once it consumes (``worker_ready``), serves ``GET /metrics`` from a thread of its main process
  on ``ROLEGATE_WORKER_METRICS_ADDRESS:PORT``: every process's files summed (the multiprocess
  collector), children that exited included (their counts happened). Who may read it is the
  web's decision, ``portal.metrics.scrape_access`` (``ROLEGATE_METRICS_TOKEN``,
  ``ROLEGATE_METRICS_ALLOWED_NETWORKS``), answered alike (``portal.metrics.scrape_refusal``);
- marks each child dead as it exits (``worker_process_shutdown``: its live gauges go, its
  counters stay); a child forked after the server started (a replaced child) closes its copy of
  the listening socket as it is forked, so only the main process ever holds the port.

The gauges read from the database are the web's alone: the worker would only repeat them.

prometheus_client is imported inside the functions below, never at the top: this module is
imported before :func:`prepare` sets the variable.
"""

from __future__ import annotations

import atexit
import http
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from celery import signals

logger = logging.getLogger(__name__)

PATH = "/metrics"

_server: WSGIServer | None = None


def prepare() -> bool:
    """In the main process of a starting worker: a new multiprocess folder and the signal
    receivers, when ``ROLEGATE_WORKER_METRICS_PORT`` is set; True if so."""
    from django.conf import settings

    if not settings.ROLEGATE_WORKER_METRICS_PORT:
        return False
    if "prometheus_client" in sys.modules:
        # Too late: its counters would live in each process's memory, a child's out of reach.
        logger.error("Worker metrics not served: prometheus_client was imported before the worker started")
        return False
    folder = tempfile.mkdtemp(prefix="rolegate-worker-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    atexit.register(_remove_folder, folder, os.getpid())
    signals.worker_ready.connect(_serve_when_ready, weak=False)
    signals.worker_process_shutdown.connect(_child_exited, weak=False)
    return True


def _remove_folder(folder: str, owner: int) -> None:
    if os.getpid() == owner:  # never from a forked child that happens to exit normally
        shutil.rmtree(folder, ignore_errors=True)


def _serve_when_ready(**kwargs: Any) -> None:
    global _server
    from django.conf import settings

    if _server is not None:  # the consumer restarted (a lost broker connection)
        return
    address, port = settings.ROLEGATE_WORKER_METRICS_ADDRESS, settings.ROLEGATE_WORKER_METRICS_PORT
    try:
        _server = serve(address, port)
    except OSError as exc:
        logger.error("Worker metrics not served: %s port %s cannot be bound (%s)", address, port, exc)
        return
    os.register_at_fork(after_in_child=_forked)
    logger.info("Worker metrics served on %s port %s at %s", address, _server.server_port, PATH)
    if not (settings.ROLEGATE_METRICS_TOKEN or settings.ROLEGATE_METRICS_ALLOWED_NETWORKS):
        logger.warning(
            "Worker metrics answer 404 until ROLEGATE_METRICS_TOKEN or ROLEGATE_METRICS_ALLOWED_NETWORKS is set"
        )


def _forked() -> None:
    """In a process forked from the worker's main one after the server started (a pool child
    replacing another): close its copy of the listening socket (the parent's stays open). The
    serving thread is not copied by a fork."""
    global _server
    if _server is not None:
        _server.socket.close()
        _server = None


def _child_exited(pid: int, **kwargs: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


# --- the endpoint --------------------------------------------------------------------------------


def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """``GET``/``HEAD /metrics``: this worker's counters, to whoever the web would show its own."""
    from portal import metrics

    if environ.get("PATH_INFO") != PATH:
        return _answer(start_response, 404, b"Not Found\n")
    if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
        return _answer(start_response, 405, b"Method Not Allowed\n", {"Allow": "GET, HEAD"})
    access = metrics.scrape_access(
        remote_addr=environ.get("REMOTE_ADDR"), authorization=environ.get("HTTP_AUTHORIZATION")
    )
    refusal = metrics.scrape_refusal(access)
    if refusal is not None:
        status, text, headers = refusal
        return _answer(start_response, status, text.encode(), headers)
    body, content_type = metrics.exposition()
    start_response(
        "200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
    )
    return [b"" if environ["REQUEST_METHOD"] == "HEAD" else body]


def _answer(
    start_response: StartResponse, status: int, body: bytes, headers: dict[str, str] | None = None
) -> list[bytes]:
    phrase = http.HTTPStatus(status).phrase
    start_response(
        f"{status} {phrase}",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body))), *(headers or {}).items()],
    )
    return [body]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds the worker's shutdown


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No line per scrape (one every few seconds) in the worker's log."""


def serve(address: str, port: int) -> WSGIServer:
    """Serve :func:`application` on ``address:port`` (port 0: any free one) from a daemon thread."""
    server_class = _Server6 if ":" in address else _Server
    server = make_server(address, port, application, server_class=server_class, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="rolegate-worker-metrics", daemon=True).start()
    return server
