"""Who the client is (audit ``client_ip``, rate limit): proxies and a shared cache."""

from __future__ import annotations

import ipaddress

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from exchange.models import AuditEvent
from tests.exchange import cases
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
        (2, FORWARDED, "203.0.113.7"),  # the first proxy, 203.0.113.7, is not in a trusted network
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


def networks(*items: str) -> tuple:
    return tuple(ipaddress.ip_network(item) for item in items)


def test_two_proxies_in_trusted_networks_give_the_address_the_outer_one_saw(db, settings):
    settings.ROLEGATE_TRUSTED_PROXIES = 2
    settings.ROLEGATE_TRUSTED_PROXY_NETWORKS = networks("10.0.0.0/8", "203.0.113.0/24")
    api = APIClient(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=FORWARDED)
    assert audited_ip(post_form(api, TOKEN, exchange_params("a.b.c"))) == "198.51.100.66"


@pytest.mark.parametrize(
    ("peer", "audited"),
    [("198.51.100.20", "198.51.100.20"), ("2001:db8::20", "2001:db8::20"), ("::ffff:198.51.100.20", "198.51.100.20")],
)
def test_a_client_reaching_gunicorn_directly_cannot_choose_its_address(db, settings, peer, audited):
    """Only a TCP peer in ROLEGATE_TRUSTED_PROXY_NETWORKS is believed about X-Forwarded-For."""
    settings.ROLEGATE_TRUSTED_PROXIES = 1
    settings.ROLEGATE_TRUSTED_PROXY_NETWORKS = networks("10.0.0.0/8")
    settings.ROLEGATE_RATE_LIMIT = 3
    cache.clear()
    statuses = []
    for n in range(6):
        api = APIClient(REMOTE_ADDR=peer, HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
        response = post_form(api, TOKEN, exchange_params("a.b.c"))
        statuses.append(response.status_code)
    assert statuses == [400, 400, 400, 429, 429, 429]
    assert {e.client_ip for e in AuditEvent.objects.filter(reason="malformed_token")} == {audited}
    cache.clear()


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("::FFFF:c633:6407", "198.51.100.7"),
        ("2001:db8::1", "2001:db8::1"),
        ("unix:/run/gunicorn.sock", None),
    ],
)
def test_ipv4_mapped_addresses_are_audited_as_ipv4(db, settings, remote, expected):
    api = APIClient(REMOTE_ADDR=remote)
    assert audited_ip(post_form(api, TOKEN, exchange_params("a.b.c"))) == expected


def test_a_mapped_forwarded_address_from_a_trusted_proxy_is_ipv4_too(db, settings):
    settings.ROLEGATE_TRUSTED_PROXIES = 1
    settings.ROLEGATE_TRUSTED_PROXY_NETWORKS = networks("10.0.0.0/8")
    api = APIClient(REMOTE_ADDR="::ffff:10.1.2.3", HTTP_X_FORWARDED_FOR="::ffff:203.0.113.9")
    assert audited_ip(post_form(api, TOKEN, exchange_params("a.b.c"))) == "203.0.113.9"


def test_mapped_and_plain_ipv4_share_one_bucket(db, settings):
    settings.ROLEGATE_RATE_LIMIT = 2
    cache.clear()
    codes = [
        post_form(APIClient(REMOTE_ADDR=remote), TOKEN, exchange_params("a.b.c")).status_code
        for remote in ("198.51.100.8", "::ffff:198.51.100.8", "198.51.100.8")
    ]
    assert codes == [400, 400, 429]
    cache.clear()


@pytest.mark.parametrize(("prefix", "buckets"), [(64, 1), (112, 40), (128, 40)])
def test_ipv6_clients_are_counted_by_prefix(db, settings, prefix, buckets):
    """40 addresses of one /64 are one client with the default prefix (the review found 40)."""
    settings.ROLEGATE_RATE_LIMIT = 1
    settings.ROLEGATE_RATE_LIMIT_IPV6_PREFIX = prefix
    cache.clear()
    admitted = 0
    for n in range(40):
        api = APIClient(REMOTE_ADDR=f"2001:db8:1:2:{n:x}::1")
        admitted += post_form(api, TOKEN, exchange_params("a.b.c")).status_code == 400
    assert admitted == buckets
    other = APIClient(REMOTE_ADDR="2001:db8:1:3::1")  # another /64
    assert post_form(other, TOKEN, exchange_params("a.b.c")).status_code == 400
    cache.clear()


# --- the per-project limit, after verification ------------------------------------------------


def exchange(api, stand_in, claims):
    return post_form(api, TOKEN, exchange_params(stand_in.mint(stand_in.claims(claims)), cases.DEPLOY_WEB))


def test_a_runaway_project_is_limited_and_audited_with_its_own_reason(
    api, registry, stand_in, web_main_claims, settings
):
    settings.ROLEGATE_PROJECT_RATE_LIMIT = 2
    cache.clear()
    assert [exchange(api, stand_in, web_main_claims).status_code for _ in range(2)] == [200, 200]
    response = exchange(api, stand_in, web_main_claims)
    assert response.status_code == 429, response.content
    assert response.json()["error"] == "slow_down"
    assert 1 <= int(response["Retry-After"]) <= 60
    event = AuditEvent.objects.get(request_id=response["X-Request-ID"])
    assert (event.reason, event.token_verified, event.project_id, event.issuer) == (
        "project_rate_limited",
        True,
        web_main_claims["project_id"],
        "gitlab-test",
    )
    assert event.minted_jti is None
    # Another project of the same issuer, from the same address, is not starved.
    other = {**web_main_claims, "project_id": "999", "project_path": "platform/web"}
    assert exchange(api, stand_in, other).status_code == 200
    cache.clear()


def test_verified_requests_within_their_project_limit_do_not_use_up_the_address(
    api, registry, stand_in, web_main_claims, settings
):
    """CI jobs behind one NAT address: their verified exchanges count per project, so the
    address's limit is left for holding back junk."""
    settings.ROLEGATE_RATE_LIMIT = 3
    settings.ROLEGATE_PROJECT_RATE_LIMIT = 100
    cache.clear()
    assert {exchange(api, stand_in, web_main_claims).status_code for _ in range(6)} == {200}
    junk = [post_form(api, TOKEN, exchange_params("a.b.c")).status_code for _ in range(4)]
    assert junk == [400, 400, 400, 429]
    cache.clear()


def test_project_limited_requests_still_count_against_the_address(api, registry, stand_in, web_main_claims, settings):
    """A client replaying one project's tokens past its limit is held back by its address too."""
    settings.ROLEGATE_RATE_LIMIT = 3
    settings.ROLEGATE_PROJECT_RATE_LIMIT = 1
    cache.clear()
    codes = [exchange(api, stand_in, web_main_claims).status_code for _ in range(6)]
    assert codes == [200, 429, 429, 429, 429, 429]
    rows = list(AuditEvent.objects.order_by("id").values_list("reason", "count"))
    assert rows == [("granted", 1)] + [("project_rate_limited", 1)] * 3 + [("rate_limited", 2)]
    cache.clear()
