"""Rolegate's Prometheus metrics (docs/operations.md "Metrics"): the counters and the histogram
the apps update, what ``GET /metrics`` is made of, and who may read it (the web's endpoint,
``console.metrics``, and the Celery worker's, ``portal.worker_metrics``).

Counters live in the process that counts. Under gunicorn with several workers each worker counts
on its own, so ``PROMETHEUS_MULTIPROC_DIR`` (set by ``gunicorn.conf.py``) makes every process
write its values to files in that folder, and :func:`exposition` sums them, dead workers'
included (``gunicorn.conf.py`` marks them dead). The Celery worker does the same with its pool's
children in a folder of its own (``portal.worker_metrics``). Without the variable (``runserver``,
tests) the values stay in memory.

Gauges read from the database (each role's trust policy size against its quota, the signing key's
age, roles by sync state) are computed when scraped by a collector of the layer that may read them
(``console.metrics``), handed to :func:`exposition`.

Labels are bounded: endpoints, outcomes and reasons are fixed sets of codes, issuers and roles are
the registered ones. Never a claim value, token or address.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterable

from django.conf import settings
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.registry import Collector

EXCHANGES = Counter(
    "rolegate_exchanges",
    "Exchange requests recorded in the audit trail, by endpoint, outcome and reason code.",
    ["endpoint", "outcome", "reason"],
)
EXCHANGE_LATENCY = Histogram(
    "rolegate_exchange_duration_seconds",
    "Time from the request's arrival to its audit event, by endpoint.",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
EXCHANGE_REDECISIONS = Counter(
    "rolegate_exchange_redecisions",
    "Exchange decisions made again because the registry moved under a decision (another writer,"
    " or the request's own first-use identity pins), by endpoint.",
    ["endpoint"],
)
AUDIT_WRITE_FAILURES = Counter(
    "rolegate_audit_write_failures",
    "Exchange requests refused with 503 because their audit event could not be written.",
)
JWKS_FETCHES = Counter(
    "rolegate_jwks_fetches", "Attempts to fetch a GitLab issuer's signing keys (JWKS), by issuer.", ["issuer"]
)
JWKS_FETCH_FAILURES = Counter(
    "rolegate_jwks_fetch_failures", "Failed attempts to fetch a GitLab issuer's JWKS, by issuer.", ["issuer"]
)
IAM_SYNCS = Counter(
    "rolegate_iam_role_syncs",
    "Role trust-policy syncs, by outcome (unchanged, updated, failed, retrying).",
    ["outcome"],
)


def exchange_observed(*, endpoint: str, outcome: str, reason: str, latency_ms: float | None) -> None:
    EXCHANGES.labels(endpoint=endpoint, outcome=outcome, reason=reason).inc()
    if latency_ms is not None:
        EXCHANGE_LATENCY.labels(endpoint=endpoint).observe(latency_ms / 1000)


def jwks_fetch_observed(*, issuer: str, failed: bool) -> None:
    JWKS_FETCHES.labels(issuer=issuer).inc()
    if failed:
        JWKS_FETCH_FAILURES.labels(issuer=issuer).inc()


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition(extra: Iterable[Collector] = ()) -> tuple[bytes, str]:
    """The text exposition: this process's (or every process's) counters, then ``extra``."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        registry = CollectorRegistry(auto_describe=False)
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    body = generate_latest(registry)
    own = CollectorRegistry(auto_describe=False)
    for collector in extra:
        own.register(collector)
    return body + generate_latest(own), CONTENT_TYPE_LATEST


# --- who may read /metrics ----------------------------------------------------------------------

ALLOWED = "allowed"
DISABLED = "disabled"  # neither a token nor networks configured: /metrics does not exist (404)
OUTSIDE = "outside"  # the peer is not in ROLEGATE_METRICS_ALLOWED_NETWORKS (404)
NO_TOKEN = "no_token"  # the bearer token is missing or wrong (403)


def scrape_access(*, remote_addr: str | None, authorization: str | None) -> str:
    """Whether a scrape may read the metrics: every configured check must pass.

    ``remote_addr`` is the TCP peer (never X-Forwarded-For, which a client writes itself)."""
    token: str | None = settings.ROLEGATE_METRICS_TOKEN
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = settings.ROLEGATE_METRICS_ALLOWED_NETWORKS
    if not token and not networks:
        return DISABLED
    if networks:
        try:
            address = ipaddress.ip_address((remote_addr or "").split("%")[0])
        except ValueError:
            return OUTSIDE
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if not any(address.version == net.version and address in net for net in networks):
            return OUTSIDE
    if token:
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
            return NO_TOKEN
    return ALLOWED


def scrape_refusal(access: str) -> tuple[int, str, dict[str, str]] | None:
    """What a scrape that :func:`scrape_access` refused gets (status, text body, extra headers),
    the same from the web's ``/metrics`` and the worker's (``portal.worker_metrics``); ``None``
    when it may read the metrics."""
    if access in (DISABLED, OUTSIDE):
        return 404, "Not Found\n", {}
    if access != ALLOWED:
        return (
            403,
            "Forbidden: a valid metrics bearer token is required\n",
            {"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return None
