"""Gunicorn settings of Rolegate's web process (Dockerfile, docker-compose.yml, Kubernetes):
``gunicorn portal.wsgi:application --config gunicorn.conf.py``.

Metrics (docs/operations.md "Metrics"): each worker is its own process, so prometheus-client
writes its counters to files in ``PROMETHEUS_MULTIPROC_DIR`` and ``GET /metrics`` sums every
worker's files, dead workers' included (their counts happened), and drops a dead worker's live
gauges (``child_exit``). Counters start at zero with the server, as Prometheus expects of a
restart: unset, the folder is a new one under the temporary folder (``TMPDIR``, a writable
emptyDir on the read-only Kubernetes image), removed on exit; set, its ``*.db`` files are
deleted when gunicorn starts, so give each server its own. Workers are Rolegate's threaded worker
(``portal.gunicorn_worker``: gunicorn's gthread, balanced across workers; 4 threads each); bind
address, worker count (one per CPU) and logging stay on the command line.
"""

import os
import shutil
import tempfile
from pathlib import Path

# Threads, so that a worker keeps serving while one request waits on STS or a JWKS fetch (a sync
# worker would stand idle). README "Performance" measures this shape: 2 workers (the command
# lines: one per CPU) x 4 threads on 2 CPUs.
worker_class = "portal.gunicorn_worker.RolegateWorker"
threads = 4

_own_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _own_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="rolegate-metrics-")
# Inherited by every worker, which imports prometheus_client after this point.
multiproc_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def on_starting(server):
    """Before any worker exists: no counts of a previous server."""
    multiproc_dir.mkdir(parents=True, exist_ok=True)
    for stale in multiproc_dir.glob("*.db"):
        stale.unlink()


def child_exit(server, worker):
    """A worker died or was replaced: its counters stay summed, its live gauges go."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_dir:
        shutil.rmtree(multiproc_dir, ignore_errors=True)
