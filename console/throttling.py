"""Throttling of guessed credentials: the admin login's client address (django-axes) and failed
platform-API token authentications per client address (docs/operations.md "Security controls")."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError

from exchange.apis import client_ip

logger = logging.getLogger(__name__)


def request_client_ip(request) -> str | None:
    """django-axes' ``AXES_CLIENT_IP_CALLABLE``: the address the exchange audits and limits.

    ``None`` when the request has none (``Client.force_login``, a management command): axes then
    stores NULL; a stand-in word such as ``"unknown"`` is refused by PostgreSQL's inet column."""
    return client_ip(request.META)


def _window() -> tuple[int, int]:
    """The current fixed window's number and the seconds left in it."""
    length = settings.ROLEGATE_API_AUTH_WINDOW_SECONDS
    now = int(time.time())
    return now // length, length - now % length


def _key(ip: str, window: int) -> str:
    return f"rolegate:api-auth-failures:{ip}:{window}"


def api_auth_retry_after(*, ip: str) -> int | None:
    """Seconds until ``ip`` may try API tokens again, or ``None`` when it is not throttled.
    A cache that is down throttles nobody (fails open, like the exchange's rate limit)."""
    limit = settings.ROLEGATE_API_AUTH_FAILURE_LIMIT
    if not limit:
        return None
    window, left = _window()
    try:
        failures = cache.get(_key(ip, window), 0)
    except RedisError as exc:
        logger.warning("API token throttling not applied: the cache is unavailable (%s)", type(exc).__name__)
        return None
    return left if failures >= limit else None


def api_auth_failure_record(*, ip: str) -> None:
    """Count one failed API token authentication from ``ip`` in the current window."""
    if not settings.ROLEGATE_API_AUTH_FAILURE_LIMIT:
        return
    window, _ = _window()
    key = _key(ip, window)
    timeout = settings.ROLEGATE_API_AUTH_WINDOW_SECONDS + 1
    try:
        cache.add(key, 0, timeout=timeout)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=timeout)
    except RedisError as exc:
        logger.warning("API token failure not counted: the cache is unavailable (%s)", type(exc).__name__)
