"""Who the client is (audit ``client_ip``, rate limit): proxies and a shared cache."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from exchange.models import AuditEvent
from tests.exchange.conftest import exchange_params, post_form
from tests.services import free_port, port_open, require

TOKEN = "/api/v1/token"
FORWARDED = "198.51.100.66, 203.0.113.7"  # the client's own claim, then what the proxy saw


def audited_ip(response) -> str | None:
    return AuditEvent.objects.get(request_id=response["X-Request-ID"]).client_ip


@pytest.mark.parametrize(
    ("trusted", "forwarded", "expected"),
    [
        (0, FORWARDED, "10.0.0.1"),  # no proxy trusted: X-Forwarded-For is the client's word
        (1, FORWARDED, "203.0.113.7"),  # one proxy: the address it saw
        (2, FORWARDED, "198.51.100.66"),
        (3, FORWARDED, "10.0.0.1"),  # shorter than the proxy chain: the peer
        (1, "not-an-ip", "10.0.0.1"),
        (1, "", "10.0.0.1"),
    ],
)
def test_client_ip_behind_trusted_proxies(db, settings, trusted, forwarded, expected):
    settings.ROLEGATE_TRUSTED_PROXIES = trusted
    api = APIClient(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)
    response = post_form(api, TOKEN, exchange_params("a.b.c"))
    assert response.status_code == 400
    assert audited_ip(response) == expected


def test_rate_limit_fails_open_when_the_shared_cache_is_down(db, settings):
    closed = free_port()
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed}/0",
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    settings.ROLEGATE_RATE_LIMIT = 1
    api = APIClient(REMOTE_ADDR="10.0.0.2")
    for _ in range(2):
        response = post_form(api, TOKEN, exchange_params("a.b.c"))
        assert response.status_code == 400  # the token's fault, not a 429 nor a 500
        assert AuditEvent.objects.get(request_id=response["X-Request-ID"]).reason == "malformed_token"


def test_rate_limit_is_shared_through_redis(db, settings):
    require(port_open("127.0.0.1", 6379), "this test needs Redis on 127.0.0.1:6379")
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/9",
            "KEY_PREFIX": f"rolegate-test-{free_port()}",
        }
    }
    settings.ROLEGATE_RATE_LIMIT = 2
    api = APIClient(REMOTE_ADDR="10.0.0.3")
    try:
        for _ in range(2):
            assert post_form(api, TOKEN, exchange_params("a.b.c")).status_code == 400
        # A fresh connection, as another process would have: the count lives in Redis.
        cache.close()
        response = post_form(api, TOKEN, exchange_params("a.b.c"))
        assert response.status_code == 429
        assert AuditEvent.objects.get(request_id=response["X-Request-ID"]).reason == "rate_limited"
    finally:
        cache.clear()
