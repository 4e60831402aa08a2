"""A slow or hostile JWKS cannot hold the exchange (issue: "a slow JWKS holds workers").

The fetch ends by ``ROLEGATE_JWKS_FETCH_SECONDS`` however slowly the server drips; a request
waiting for a fetch in flight gets 503 ``temporarily_unavailable`` with its audit event after at
most that long; the keys are shared through the Django cache, so a new process verifies with
them while GitLab is down; resolved addresses are checked when the connection is made.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.core.cache import cache

from exchange import gitlab, jwks, jwks_fetch
from exchange.models import AuditEvent
from mappings.matching import RegisteredIssuer
from tests.chaos.stand_ins import DripServer, free_port
from tests.exchange import cases
from tests.exchange.conftest import exchange_params, post_form

TOKEN = "/api/v1/token"


def issuer_at(url: str, *, jwks_url: str | None = None) -> RegisteredIssuer:
    return RegisteredIssuer(name="gitlab-test", url=url, audiences=("a",), jwks_url=jwks_url)


@pytest.fixture
def drip(request):
    server = DripServer(mode=request.param if hasattr(request, "param") else "body", interval=0.3, body=b"x" * 40)
    yield server
    server.stop()


@pytest.mark.parametrize("drip", ["body", "headers", "silent"], indirect=True)
def test_a_dripping_jwks_fetch_ends_by_the_deadline(drip, settings):
    # 40 bytes a 0.3 s apart: 12 s without a total deadline (every read is well within 3 s).
    settings.ROLEGATE_JWKS_FETCH_SECONDS = 1
    issuer = issuer_at(drip.url, jwks_url=f"{drip.url}/keys")
    started = time.monotonic()
    with pytest.raises(jwks_fetch.JwksFetchError, match=r"deadline|timed out|Timeout"):
        jwks_fetch.fetch_jwks_document(issuer)
    assert time.monotonic() - started < 2.5
    assert drip.hits == 1


def test_a_dripping_discovery_document_ends_by_the_deadline(drip, settings):
    """The dripping server is the issuer: its discovery document itself drips."""
    settings.ROLEGATE_JWKS_FETCH_SECONDS = 1
    issuer = issuer_at(drip.url, jwks_url=None)
    started = time.monotonic()
    with pytest.raises(gitlab.TokenRejected) as caught:
        gitlab.signing_key(issuer, "kid-1")
    assert caught.value.reason == "jwks_unavailable"
    assert time.monotonic() - started < 2.5


def test_concurrent_lookups_wait_at_most_the_deadline_for_a_fetch_in_flight(drip, settings):
    settings.ROLEGATE_JWKS_FETCH_SECONDS = 1
    issuer = issuer_at(drip.url, jwks_url=f"{drip.url}/keys")
    outcomes: list[tuple[str, float]] = []
    barrier = threading.Barrier(3)

    def lookup():
        barrier.wait()
        started = time.monotonic()
        try:
            gitlab.signing_key(issuer, "kid-1")
            outcomes.append(("key", time.monotonic() - started))
        except gitlab.TokenRejected as rejected:
            outcomes.append((rejected.reason, time.monotonic() - started))

    threads = [threading.Thread(target=lookup) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert [reason for reason, _ in outcomes] == ["jwks_unavailable"] * 3
    assert max(seconds for _, seconds in outcomes) < 3.0
    assert drip.hits == 1  # one fetch for the three of them


def test_a_request_waiting_for_a_fetch_in_flight_gets_503_with_its_audit_event(
    api, registry, stand_in, web_main_claims, settings
):
    settings.ROLEGATE_JWKS_FETCH_SECONDS = 1
    issuer = issuer_at(stand_in.url)
    # Another process is fetching this issuer's keys and has not finished.
    cache.set(jwks._Shared.of(issuer).gate_key, "fetching", timeout=60)
    token = stand_in.mint(stand_in.claims(web_main_claims))
    started = time.monotonic()
    response = post_form(api, TOKEN, exchange_params(token, cases.DEPLOY_WEB))
    assert time.monotonic() - started < 3.0
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert "did not arrive within 1 seconds" in response.json()["error_description"]
    assert response["Retry-After"]
    event = AuditEvent.objects.get(request_id=response["X-Request-ID"])
    assert (event.outcome, event.reason) == ("denied", "jwks_unavailable")
    assert stand_in.jwks_fetches() == 0


def test_a_new_process_verifies_with_the_shared_keys_while_gitlab_is_down(stand_in):
    issuer = issuer_at(stand_in.url)
    assert gitlab.signing_key(issuer, stand_in.primary.kid).key_id == stand_in.primary.kid
    stand_in.down = True
    gitlab.forget_cached_keys()  # a process started now: nothing in its memory
    assert gitlab.signing_key(issuer, stand_in.primary.kid).key_id == stand_in.primary.kid
    assert stand_in.jwks_fetches() == 1
    assert len(stand_in.hits) == 2  # discovery + keys, once


def test_processes_share_one_fetch_per_refresh_interval(stand_in):
    issuer = issuer_at(stand_in.url)
    for _ in range(3):  # three processes, each with an unknown kid
        gitlab.forget_cached_keys()
        with pytest.raises(gitlab.TokenRejected):
            gitlab.signing_key(issuer, "rotated-kid")
    assert stand_in.jwks_fetches() == 1


def test_a_planted_shared_entry_is_ignored(stand_in, gitlab_key):
    """Someone who can write to the cache cannot add a key: the entry is signed."""
    from django.core import signing

    issuer = issuer_at(stand_in.url)
    shared = jwks._Shared.of(issuer)
    planted = {"keys": [{**gitlab_key.public(), "kid": "planted"}], "fetched_at": time.time() + 10}
    cache.set(shared.keys_key, signing.dumps(planted, salt="another-salt"), timeout=None)
    cache.set(shared.gate_key, "done", timeout=60)
    with pytest.raises(gitlab.TokenRejected) as caught:
        gitlab.signing_key(issuer, "planted")
    assert caught.value.reason == "jwks_unavailable"


def test_with_the_shared_cache_down_each_process_still_fetches_once(stand_in, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    issuer = issuer_at(stand_in.url)
    assert gitlab.signing_key(issuer, stand_in.primary.kid).key_id == stand_in.primary.kid
    with pytest.raises(gitlab.TokenRejected) as caught:
        gitlab.signing_key(issuer, "rotated-kid")
    assert caught.value.reason == "unknown_kid"
    assert stand_in.jwks_fetches() == 1


def test_an_address_refused_at_fetch_time_is_never_called(stand_in, settings):
    """``localhost`` resolves to loopback: refused once connected, before a request is sent."""
    settings.ROLEGATE_ISSUER_ALLOWED_NETWORKS = []
    issuer = issuer_at(stand_in.url.replace("127.0.0.1", "localhost"))
    with pytest.raises(gitlab.TokenRejected) as caught:
        gitlab.signing_key(issuer, stand_in.primary.kid)
    assert caught.value.reason == "jwks_unavailable"
    assert stand_in.hits == []


def test_a_resolver_that_does_not_answer_ends_the_fetch_by_the_deadline(stand_in, settings, monkeypatch):
    """``getaddrinfo`` cannot be interrupted: it runs aside, and the fetch stops waiting at the
    deadline (without that, a hung resolver held the caller for as long as it liked)."""
    settings.ROLEGATE_JWKS_FETCH_SECONDS = 1
    released = threading.Event()
    real_getaddrinfo = jwks_fetch.socket.getaddrinfo

    def hung_resolver(*args, **kwargs):
        released.wait(10)
        return real_getaddrinfo(*args, **kwargs)

    monkeypatch.setattr(jwks_fetch.socket, "getaddrinfo", hung_resolver)
    issuer = issuer_at(stand_in.url.replace("127.0.0.1", "localhost"))
    started = time.monotonic()
    try:
        with pytest.raises(jwks_fetch.JwksFetchError, match="resolving localhost did not end by the 1 s deadline"):
            jwks_fetch.fetch_jwks_document(issuer)
        assert time.monotonic() - started < 2.5
    finally:
        released.set()
    assert stand_in.jwks_fetches() == 0


def test_a_name_with_several_addresses_is_tried_in_order(stand_in, monkeypatch):
    """The first address refuses the connection; the fetch goes on with the next one."""
    port = int(stand_in.url.rsplit(":", 1)[1])
    real_getaddrinfo = jwks_fetch.socket.getaddrinfo

    def two_addresses(host, *args, **kwargs):
        if host != "gitlab.test":
            return real_getaddrinfo(host, *args, **kwargs)
        return [
            (jwks_fetch.socket.AF_INET, jwks_fetch.socket.SOCK_STREAM, 6, "", ("127.0.0.2", port)),
            (jwks_fetch.socket.AF_INET, jwks_fetch.socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ]

    monkeypatch.setattr(jwks_fetch.socket, "getaddrinfo", two_addresses)
    # Nothing listens on 127.0.0.2 (the stand-in is bound to 127.0.0.1): refused at once.
    issuer = issuer_at(stand_in.url, jwks_url=f"http://gitlab.test:{port}/oauth/discovery/keys")
    assert [entry["kid"] for entry in jwks_fetch.fetch_jwks_document(issuer)]
    assert stand_in.jwks_fetches() == 1
