"""GET /metrics (docs/operations.md "Metrics"): who may read it, the gauges read from the database,
and counts summed over several processes (gunicorn workers)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from exchange import keys
from exchange.models import SigningKey
from mappings.models import Role
from tests import command_runner
from tests.exchange.servers import ROOT, RolegateServer
from tests.factories import AccountFactory, RoleFactory
from tests.services import free_port

TOKEN = "scrape-secret-0123456789"
POD_HOST = "10.42.0.17:8000"  # Prometheus scrapes a pod by its address


def samples(body: bytes) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


# --- access ------------------------------------------------------------------------------------


def test_metrics_do_not_exist_until_a_token_or_networks_are_configured(client, settings):
    settings.ROLEGATE_METRICS_TOKEN = None
    settings.ROLEGATE_METRICS_ALLOWED_NETWORKS = []
    assert client.get("/metrics", HTTP_HOST=POD_HOST).status_code == 404
    assert client.get("/metrics", HTTP_HOST=POD_HOST, HTTP_AUTHORIZATION="Bearer anything").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (None, 403),
        ("Bearer wrong-token", 403),
        (f"Basic {TOKEN}", 403),
        (f"Bearer {TOKEN}x", 403),
        (f"Bearer {TOKEN}", 200),
    ],
)
def test_a_token_is_required_when_configured(client, settings, authorization, status):
    settings.ROLEGATE_METRICS_TOKEN = TOKEN
    settings.ROLEGATE_METRICS_ALLOWED_NETWORKS = []
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = client.get("/metrics", HTTP_HOST=POD_HOST, **headers)
    assert response.status_code == status
    if status == 403:
        assert b"rolegate_" not in response.content
        assert response["WWW-Authenticate"].startswith("Bearer")
    else:
        assert b"# TYPE rolegate_exchanges_total counter" in response.content


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("peer", "status"),
    [("10.1.2.3", 200), ("::ffff:10.1.2.3", 200), ("192.168.1.5", 404), ("fd00::1", 200), ("2001:db8::1", 404)],
)
def test_networks_restrict_by_the_tcp_peer_never_by_forwarded_for(client, settings, peer, status):
    settings.ROLEGATE_METRICS_TOKEN = None
    settings.ROLEGATE_METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]
    response = client.get("/metrics", HTTP_HOST=POD_HOST, REMOTE_ADDR=peer, HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert response.status_code == status


@pytest.mark.django_db
def test_with_both_configured_both_are_required(client, settings):
    settings.ROLEGATE_METRICS_TOKEN = TOKEN
    settings.ROLEGATE_METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network("10.0.0.0/8")]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.9", **auth).status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="172.16.0.9", **auth).status_code == 404
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.9").status_code == 403


def test_the_token_is_read_from_a_file(tmp_path):
    secret = tmp_path / "metrics-token"
    secret.write_text(TOKEN + "\n")
    code = (
        "from django.conf import settings; "
        "print(settings.ROLEGATE_METRICS_TOKEN, settings.ROLEGATE_METRICS_ALLOWED_NETWORKS)"
    )
    env = {
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DJANGO_SECRET_KEY": "x" * 50,
        "ROLEGATE_METRICS_TOKEN_FILE": str(secret),
        "ROLEGATE_METRICS_ALLOWED_NETWORKS": "10.0.0.0/8, fd00::/8",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); " + code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == f"{TOKEN} [IPv4Network('10.0.0.0/8'), IPv6Network('fd00::/8')]"
    env["ROLEGATE_METRICS_ALLOWED_NETWORKS"] = "10.0.0.0/8,intranet"
    failed = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert (
        failed.returncode != 0 and "ROLEGATE_METRICS_ALLOWED_NETWORKS: 'intranet' is not an IP network" in failed.stderr
    )


# --- gauges from the database ------------------------------------------------------------------


@pytest.mark.django_db
def test_each_roles_policy_size_is_a_fraction_of_its_quota_and_the_key_has_an_age(client, settings):
    settings.ROLEGATE_METRICS_TOKEN = TOKEN
    account = AccountFactory(name="prod", trust_policy_limit=4096)
    RoleFactory(account=account, name="deploy-web", policy_size=3891, sync_status=Role.SyncStatus.IN_SYNC)
    RoleFactory(account=account, name="never-synced", policy_size=None, sync_status=Role.SyncStatus.FAILED)
    keys.signing_key_create(
        state=SigningKey.State.CURRENT, now=timezone.now() - timedelta(days=3), activates_at=timezone.now()
    )

    found = samples(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content)
    ratio = found[("rolegate_trust_policy_quota_ratio", (("account", "prod"), ("role", "deploy-web")))]
    assert ratio == pytest.approx(3891 / 4096)
    assert not any(k[0] == "rolegate_trust_policy_quota_ratio" and ("role", "never-synced") in k[1] for k in found)
    assert found[("rolegate_roles", (("sync_status", "failed"),))] == 1
    assert found[("rolegate_roles", (("sync_status", "in_sync"),))] == 1
    assert found[("rolegate_roles", (("sync_status", "drift"),))] == 0
    assert found[("rolegate_signing_key_age_seconds", ())] == pytest.approx(3 * 86400, abs=60)


# --- several processes -------------------------------------------------------------------------

WRITER = """
from portal import metrics
for _ in range({n}):
    metrics.exchange_observed(endpoint="token", outcome="denied", reason="malformed_token", latency_ms=12.0)
metrics.jwks_fetch_observed(issuer="gitlab-com", failed=True)
"""


@pytest.mark.django_db
def test_counts_of_several_processes_are_summed(client, settings, tmp_path, monkeypatch):
    """Two processes count into PROMETHEUS_MULTIPROC_DIR; one scrape shows their sum."""
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PATH": "/usr/bin:/bin",
    }
    for n in (3, 4):
        subprocess.run([sys.executable, "-c", WRITER.format(n=n)], cwd=ROOT, env=env, check=True)
    assert len(list(tmp_path.glob("counter_*.db"))) == 2

    settings.ROLEGATE_METRICS_TOKEN = TOKEN
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    found = samples(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content)
    labels = (("endpoint", "token"), ("outcome", "denied"), ("reason", "malformed_token"))
    assert found[("rolegate_exchanges_total", labels)] == 7
    assert found[("rolegate_exchange_duration_seconds_count", (("endpoint", "token"),))] == 7
    assert found[("rolegate_exchange_duration_seconds_bucket", (("endpoint", "token"), ("le", "0.025")))] == 7
    assert found[("rolegate_jwks_fetch_failures_total", (("issuer", "gitlab-com"),))] == 2
    assert ("rolegate_roles", (("sync_status", "failed"),)) in found  # the database gauges too


def test_gunicorn_with_two_workers_sums_their_counts(tmp_path):
    """The shipped gunicorn.conf.py under two workers: every request counted once, whichever worker
    answered, and both workers' files read."""
    database = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    env = {
        "DATABASE_URL": database,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DJANGO_SECRET_KEY": "metrics-test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
        "ROLEGATE_ALLOW_HTTP": "1",
        "ROLEGATE_METRICS_TOKEN": TOKEN,
        "ROLEGATE_RATE_LIMIT": "0",
    }
    migrated = command_runner.manage("migrate", "--no-input", "-v", "0", env={**os.environ, **env}, cwd=ROOT)
    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    env["ROLEGATE_ISSUER"] = f"http://127.0.0.1:{port}"
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")  # created by gunicorn.conf.py
    server = RolegateServer(port=port, env=env, workers=2, log=tmp_path / "gunicorn.log")
    try:
        server.wait_ready()
        requests_sent = 24
        body = {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": "not-a-jwt",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        }

        def exchange(_):
            return requests.post(f"{server.url}/api/v1/token", data=body, headers={"Connection": "close"}, timeout=10)

        with ThreadPoolExecutor(max_workers=6) as pool:
            statuses = [r.status_code for r in pool.map(exchange, range(requests_sent))]
        assert statuses == [400] * requests_sent
        assert len(list((tmp_path / "metrics").glob("counter_*.db"))) == 2  # one file per worker

        scraped = requests.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert scraped.status_code == 200, scraped.text
        found = samples(scraped.content)
        labels = (("endpoint", "token"), ("outcome", "denied"), ("reason", "malformed_token"))
        assert found[("rolegate_exchanges_total", labels)] == requests_sent
        assert found[("rolegate_exchange_duration_seconds_count", (("endpoint", "token"),))] == requests_sent
    finally:
        server.stop()
