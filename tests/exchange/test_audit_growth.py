"""How many audit rows one client can cause (issue 12, finding 1): requests refused before a
subject token is read are counted in one aggregate event per client, endpoint, reason and
minute; every request that presents a token keeps its own event (docs/api.md#audit-trail)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.db.models import Sum
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from exchange.audit import write_jsonl
from exchange.models import AuditEvent
from tests.exchange.conftest import exchange_params, post_form

TOKEN = "/api/v1/token"
CREDENTIALS = "/api/v1/credentials"
# The middle of a minute: a test's requests all fall in it.
MINUTE = datetime(2026, 12, 3, 12, 0, 20, tzinfo=UTC)


@pytest.fixture
def frozen():
    with time_machine.travel(MINUTE, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def _clean_cache():
    cache.clear()
    yield
    cache.clear()


def total() -> int:
    return AuditEvent.objects.aggregate(total=Sum("count"))["total"] or 0


def test_a_get_flood_is_one_row_with_its_count(db, frozen):
    api = APIClient(REMOTE_ADDR="198.51.100.1")
    for _ in range(100):
        assert api.get(TOKEN).status_code == 405
    (event,) = AuditEvent.objects.all()
    assert (event.reason, event.count, event.client_ip, event.endpoint) == (
        "method_not_allowed",
        100,
        "198.51.100.1",
        "token",
    )


def test_a_post_flood_past_the_limit_keeps_the_token_events_and_counts_the_rest(db, settings, frozen):
    """The review's flood: 85 % of the POSTs were 429s, each a row. Now the requests that got past
    the limit (they presented a token) have their events; the 429s are one row."""
    settings.ROLEGATE_RATE_LIMIT = 10
    api = APIClient(REMOTE_ADDR="198.51.100.2")
    codes = [post_form(api, TOKEN, exchange_params("a.b.c")).status_code for _ in range(70)]
    assert codes == [400] * 10 + [429] * 60
    assert AuditEvent.objects.filter(reason="malformed_token", count=1).count() == 10
    (limited,) = AuditEvent.objects.filter(reason="rate_limited")
    assert limited.count == 60
    assert AuditEvent.objects.count() == 11 and total() == 70


def test_unreadable_bodies_and_bodies_without_a_token_are_counted(db, frozen):
    api = APIClient(REMOTE_ADDR="198.51.100.3")
    for body, content_type in [
        (b"\xff\xfe", "application/x-www-form-urlencoded"),
        (b"not json", "application/json"),
        (b"grant_type=x", "text/plain"),
        (b"grant_type=x&subject_token_type=y", "application/x-www-form-urlencoded"),
    ]:
        assert api.generic("POST", TOKEN, body, content_type=content_type).status_code == 400
    (event,) = AuditEvent.objects.all()
    assert (event.reason, event.count) == ("invalid_request", 4)
    # A request that names a subject token keeps its own event, even when another field is wrong.
    response = post_form(api, TOKEN, exchange_params("a.b.c", subject_token_type="x"))
    assert response.status_code == 400
    own = AuditEvent.objects.get(request_id=response["X-Request-ID"])
    assert (own.reason, own.count, own.aggregate_key) == ("invalid_request", 1, None)


def test_the_aggregate_event_is_per_client_endpoint_reason_and_minute(db, frozen):
    one, two = APIClient(REMOTE_ADDR="198.51.100.4"), APIClient(REMOTE_ADDR="198.51.100.5")
    for api in (one, two):
        api.get(TOKEN)
        api.get(CREDENTIALS)
        api.get(TOKEN)
    assert AuditEvent.objects.count() == 4
    frozen.shift(timedelta(minutes=1))
    one.get(TOKEN)
    assert AuditEvent.objects.count() == 5
    assert sorted(AuditEvent.objects.values_list("count", flat=True)) == [1, 1, 1, 2, 2]


def test_one_ipv6_network_is_one_client_for_the_aggregate_too(db, frozen):
    for n in range(30):
        APIClient(REMOTE_ADDR=f"2001:db8:7:7:{n:x}::1").get(TOKEN)
    (event,) = AuditEvent.objects.all()
    assert event.count == 30 and event.client_ip == "2001:db8:7:7::1"


def test_exports_say_how_many_requests_an_event_counts(db, frozen):
    import io
    import json

    api = APIClient(REMOTE_ADDR="198.51.100.6")
    for _ in range(3):
        api.get(TOKEN)
    stream = io.StringIO()
    write_jsonl(AuditEvent.objects.all(), stream)
    assert json.loads(stream.getvalue())["count"] == 3


_REQUESTS = st.sampled_from(["get", "put", "junk", "json-junk", "no-token", "token"])


def _send(api: APIClient, kind: str, path: str):
    if kind == "get":
        return api.get(path)
    if kind == "put":
        return api.put(path)
    if kind == "junk":
        return api.generic("POST", path, b"\xff", content_type="application/x-www-form-urlencoded")
    if kind == "json-junk":
        return api.generic("POST", path, b"[", content_type="application/json")
    if kind == "no-token":
        return post_form(api, path, {"grant_type": "x"})
    return post_form(api, path, exchange_params("a.b.c"))


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    requests=st.lists(st.tuples(_REQUESTS, st.sampled_from([TOKEN, CREDENTIALS])), min_size=1, max_size=60),
    limit=st.integers(min_value=1, max_value=8),
)
def test_rows_one_client_can_cause_in_a_minute_are_bounded(db, settings, requests, limit):
    """The documented bound (docs/operations.md#rate-limit): at most ROLEGATE_RATE_LIMIT rows of
    requests that presented a token, plus one aggregate row per endpoint (2) and pre-token reason
    (rate_limited, method_not_allowed, invalid_request: 3); and every request is counted once."""
    settings.ROLEGATE_RATE_LIMIT = limit
    AuditEvent.objects.all().delete()
    cache.clear()
    api = APIClient(REMOTE_ADDR="198.51.100.7")
    with time_machine.travel(MINUTE, tick=False):
        for kind, path in requests:
            assert _send(api, kind, path).status_code in (400, 405, 429)
    assert total() == len(requests)
    assert AuditEvent.objects.count() <= limit + 2 * 3
    assert AuditEvent.objects.filter(aggregate_key__isnull=False).count() <= 2 * 3
