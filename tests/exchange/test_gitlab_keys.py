"""The stand-in GitLab rotating its keys: a new kid is accepted after one refresh, refreshes are
single-flight and at most one per 30 s per issuer, and cached keys keep serving when GitLab is down."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import pytest
import time_machine

from exchange import gitlab
from exchange.models import AuditEvent
from mappings.matching import RegisteredIssuer
from tests.exchange import cases
from tests.exchange.conftest import exchange_params, post_form
from tests.exchange.gitlab_stand_in import GitLabKey

TOKEN = "/api/v1/token"


def exchange(api, stand_in, claims, key=None):
    token = stand_in.mint(stand_in.claims(claims), key=key)
    response = post_form(api, TOKEN, exchange_params(token, cases.DEPLOY_WEB))
    return response.status_code, AuditEvent.objects.get(request_id=response["X-Request-ID"]).reason


@pytest.fixture
def frozen():
    with time_machine.travel(datetime.now(UTC), tick=False) as traveller:
        yield traveller


def test_new_gitlab_key_is_accepted_within_30_seconds(api, registry, stand_in, web_main_claims, frozen):
    assert exchange(api, stand_in, web_main_claims) == (200, "granted")
    assert stand_in.jwks_fetches() == 1

    new_key = GitLabKey()
    stand_in.published = [stand_in.primary, new_key]
    stand_in.signing = new_key
    # The cache was filled a moment ago: no refresh yet.
    assert exchange(api, stand_in, web_main_claims) == (400, "unknown_kid")
    assert stand_in.jwks_fetches() == 1

    frozen.shift(30)
    assert exchange(api, stand_in, web_main_claims) == (200, "granted")
    assert stand_in.jwks_fetches() == 2
    # The old key is still published and still accepted, from the cache.
    assert exchange(api, stand_in, web_main_claims, key=stand_in.primary) == (200, "granted")
    assert stand_in.jwks_fetches() == 2


def test_the_refresh_interval_is_a_setting(api, registry, stand_in, web_main_claims, frozen, settings):
    settings.ROLEGATE_JWKS_MIN_REFRESH_SECONDS = 5
    assert exchange(api, stand_in, web_main_claims) == (200, "granted")
    new_key = GitLabKey()
    stand_in.published = [stand_in.primary, new_key]
    frozen.shift(4)
    assert exchange(api, stand_in, web_main_claims, key=new_key) == (400, "unknown_kid")
    assert stand_in.jwks_fetches() == 1
    frozen.shift(1)
    assert exchange(api, stand_in, web_main_claims, key=new_key) == (200, "granted")
    assert stand_in.jwks_fetches() == 2


def test_junk_kids_cannot_hammer_gitlab(api, registry, stand_in, web_main_claims, frozen):
    assert exchange(api, stand_in, web_main_claims) == (200, "granted")
    for _ in range(20):
        assert exchange(api, stand_in, web_main_claims, key=GitLabKeyWithKid(stand_in)) == (400, "unknown_kid")
    assert stand_in.jwks_fetches() == 1
    frozen.shift(31)
    for _ in range(20):
        assert exchange(api, stand_in, web_main_claims, key=GitLabKeyWithKid(stand_in)) == (400, "unknown_kid")
    assert stand_in.jwks_fetches() == 2


class GitLabKeyWithKid(GitLabKey):
    """The stand-in's own key under a random kid (cheap: no new RSA key)."""

    def __init__(self, stand_in):
        self.private_key = stand_in.primary.private_key
        self.jwk = stand_in.primary.jwk
        self.kid = uuid.uuid4().hex


def test_cached_keys_keep_serving_while_gitlab_is_down(api, registry, stand_in, web_main_claims, frozen):
    assert exchange(api, stand_in, web_main_claims) == (200, "granted")
    stand_in.down = True
    frozen.shift(31)
    assert exchange(api, stand_in, web_main_claims, key=GitLabKeyWithKid(stand_in)) == (400, "unknown_kid")
    assert exchange(api, stand_in, web_main_claims) == (200, "granted")
    frozen.shift(gitlab.MAX_KEY_AGE + 60)  # stale keys: a refresh is tried, fails, the old keys stay
    assert exchange(api, stand_in, web_main_claims) == (200, "granted")
    assert stand_in.jwks_fetches() == 1
    assert sum(1 for p in stand_in.hits if p == "/.well-known/openid-configuration") == 3


def test_refresh_is_single_flight(stand_in, frozen):
    issuer = RegisteredIssuer(name="gitlab-test", url=stand_in.url, audiences=("a",), jwks_url=None)
    results = []
    barrier = threading.Barrier(8)

    def lookup():
        barrier.wait()
        try:
            results.append(gitlab.signing_key(issuer, f"junk-{uuid.uuid4().hex}").key_id)
        except gitlab.TokenRejected as rejected:
            results.append(rejected.reason)

    threads = [threading.Thread(target=lookup) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["unknown_kid"] * 8
    assert stand_in.jwks_fetches() == 1


def test_configured_jwks_url_skips_discovery(stand_in):
    issuer = RegisteredIssuer(
        name="gitlab-test", url=stand_in.url, audiences=("a",), jwks_url=f"{stand_in.url}/oauth/discovery/keys"
    )
    assert gitlab.signing_key(issuer, stand_in.primary.kid).key_id == stand_in.primary.kid
    assert stand_in.hits == ["/oauth/discovery/keys"]


def test_discovery_naming_another_issuer_is_refused(stand_in):
    issuer = RegisteredIssuer(name="x", url=stand_in.url + "/other", audiences=("a",), jwks_url=None)
    with pytest.raises(gitlab.TokenRejected) as caught:
        gitlab.signing_key(issuer, stand_in.primary.kid)
    assert caught.value.reason == "jwks_unavailable"


def test_plain_http_jwks_refused_without_allow_http(stand_in, settings):
    settings.ROLEGATE_ALLOW_HTTP = False
    issuer = RegisteredIssuer(name="x", url=stand_in.url, audiences=("a",), jwks_url=None)
    with pytest.raises(gitlab.TokenRejected) as caught:
        gitlab.signing_key(issuer, stand_in.primary.kid)
    assert caught.value.reason == "jwks_unavailable"
    assert stand_in.hits == []
