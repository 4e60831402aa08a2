"""Whether each issuer's signing keys (JWKS) could be fetched lately, shared by every process.

The exchange fetches an issuer's JWKS only when it needs to (an unknown ``kid``, keys an hour
old), in whichever web process the token arrived at; the outcome of each attempt is counted
(``rolegate_jwks_fetches``) and written to the cache here, so that the alerts' evaluation in the
worker sees an outage that began in a web process (docs/operations.md "Alerts": a shared cache,
``ROLEGATE_CACHE_URL``, is needed for that across processes). A status nobody refreshed for
``STATUS_TTL`` seconds is forgotten: without fetches there is nothing to report.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.cache import cache
from redis.exceptions import RedisError

from portal import metrics

logger = logging.getLogger(__name__)

STATUS_TTL = 2 * 3600


def _key(issuer: str) -> str:
    return f"jwks-status:{issuer}"


def jwks_fetch_recorded(*, issuer: str, error: str | None) -> None:
    """Count one fetch attempt of ``issuer``'s JWKS and record its outcome (``error`` if it failed).
    Never raises: a cache that is down must not stop the exchange."""
    metrics.jwks_fetch_observed(issuer=issuer, failed=error is not None)
    now = time.time()
    try:
        previous = cache.get(_key(issuer)) if error else None
        since = ((previous or {}).get("failing_since") or now) if error else None
        cache.set(_key(issuer), {"ok": error is None, "error": error, "at": now, "failing_since": since}, STATUS_TTL)
    except RedisError as exc:
        logger.warning("JWKS status of issuer %s not recorded: the cache is unavailable (%s)", issuer, exc)


def jwks_status(issuer: str) -> dict[str, Any] | None:
    """The last recorded attempt: ``{"ok", "error", "at", "failing_since"}``, or ``None``."""
    try:
        status: dict[str, Any] | None = cache.get(_key(issuer))
        return status
    except RedisError as exc:
        logger.warning("JWKS status of issuer %s unknown: the cache is unavailable (%s)", issuer, exc)
        return None
