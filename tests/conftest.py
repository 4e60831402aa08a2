"""Shared fixtures.

Personas (GitLab ID token claims, from tests/fixtures/gitlab_id_token_claims.json):
- ``web_main_claims``: the web team's protected main-branch push job (platform/web, alice).
- ``api_production_claims``: the API team's production deploy job (environment=production).
- ``release_tag_claims``: a release-tag pipeline of platform/web.
- ``feature_mr_claims``: a merge-request job on an unprotected feature branch (mallory).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from tests.services import IN_CI

# CI replays the same examples every run, so a landing never depends on a lucky draw; on a
# laptop every run explores new ones (and hypothesis keeps any failure it finds for replay).
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if IN_CI:
    hypothesis_settings.load_profile("ci")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``-n N`` (xdist's ``--dist load``): whole packages sharing a live server, longest first
    (tests/scheduling.py). Any other ``--dist`` is xdist's own."""
    if config.getvalue("dist") != "load":
        return None
    from tests.scheduling import LongestFirstScheduling

    return LongestFirstScheduling(config, log)


FIXTURES = Path(__file__).resolve().parent / "fixtures" / "gitlab_id_token_claims.json"


def load_claim_examples() -> dict[str, dict]:
    """GitLab ID token payload shapes, as GitLab documents them (the suite's own copy)."""
    return json.loads(FIXTURES.read_text())["examples"]


_EXAMPLES = load_claim_examples()


@pytest.fixture(autouse=True)
def fresh_registry_cache(monkeypatch):
    """Each test starts without the per-process registry snapshot: rows that a test creates with
    factories, or that a rolled-back test left, never move the registry stamp."""
    monkeypatch.setattr("mappings.selectors._cached", None)


@pytest.fixture(autouse=True)
def one_rate_window(monkeypatch):
    """Rate-limit counters belong to a clock minute. A test that counts requests must not see the
    minute turn halfway (CI once refused a test whose 40 requests straddled hh:59:00), so every
    in-process test runs in one fixed minute; a test about the minute turning patches
    ``_window`` itself, after this."""
    from exchange import services

    monkeypatch.setattr(services, "_window", lambda: 29_000_000)


@pytest.fixture(autouse=True)
def fresh_local_cache():
    """Each test starts with empty counters (rate limit, failed API tokens) in the per-process
    cache; a shared Redis cache is never flushed."""
    from django.core.cache import caches
    from django.core.cache.backends.locmem import LocMemCache

    if isinstance(caches["default"], LocMemCache):
        caches["default"].clear()


@pytest.fixture
def web_main_claims() -> dict:
    return copy.deepcopy(_EXAMPLES["protected_main_push"])


@pytest.fixture
def api_production_claims() -> dict:
    return copy.deepcopy(_EXAMPLES["production_deploy_job"])


@pytest.fixture
def release_tag_claims() -> dict:
    return copy.deepcopy(_EXAMPLES["release_tag"])


@pytest.fixture
def feature_mr_claims() -> dict:
    return copy.deepcopy(_EXAMPLES["merge_request_feature_branch"])
