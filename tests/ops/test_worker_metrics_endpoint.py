"""The Celery worker's GET /metrics (portal.worker_metrics, docs/operations.md "Metrics"): the
web's access check answered alike, the HTTP server deciding by the TCP peer, its settings, and
the multiprocess folder a starting worker gets. A real worker scraped after a sync:
tests/iam/test_worker_metrics.py."""

from __future__ import annotations

import ipaddress
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.test import RequestFactory, override_settings
from hypothesis import given
from hypothesis import strategies as st

from console.metrics.middleware import metrics_response
from portal import worker_metrics
from tests.services import port_open

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "scrape-secret-0123456789"
NETWORKS = {"10.0.0.0/8": ipaddress.ip_network("10.0.0.0/8"), "fd00::/8": ipaddress.ip_network("fd00::/8")}


def call(environ: dict) -> tuple[int, dict[str, str], bytes]:
    """The worker's WSGI application, called as its server would."""
    answered = {}

    def start_response(status, headers, *_exc_info):
        answered["status"] = int(status.split()[0])
        answered["headers"] = dict(headers)

    body = b"".join(
        worker_metrics.application({"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", **environ}, start_response)
    )
    return answered["status"], answered["headers"], body


# --- the same answers as the web's /metrics ------------------------------------------------------


@pytest.mark.django_db
@given(
    token=st.sampled_from([None, TOKEN]),
    networks=st.lists(st.sampled_from(sorted(NETWORKS)), unique=True, max_size=2),
    peer=st.sampled_from(["10.1.2.3", "::ffff:10.1.2.3", "192.168.1.5", "fd00::1", "2001:db8::1", "", "fe80::1%eth0"]),
    authorization=st.one_of(
        st.none(),
        st.sampled_from([f"Bearer {TOKEN}", f"bearer {TOKEN}", f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer "]),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    ),
)
def test_the_worker_answers_every_scrape_as_the_web_does(token, networks, peer, authorization):
    """Whatever is configured and whoever asks: the same status, the same refusal, the metrics
    only when the web would show its own (portal.metrics.scrape_access decides for both)."""
    environ = {"REMOTE_ADDR": peer} | ({"HTTP_AUTHORIZATION": authorization} if authorization is not None else {})
    with override_settings(
        ROLEGATE_METRICS_TOKEN=token, ROLEGATE_METRICS_ALLOWED_NETWORKS=[NETWORKS[n] for n in networks]
    ):
        web = metrics_response(RequestFactory().get("/metrics", **environ))
        status, headers, body = call(environ)
    assert status == web.status_code
    assert headers.get("WWW-Authenticate") == web.headers.get("WWW-Authenticate")
    if status == 200:
        assert b"# TYPE rolegate_iam_role_syncs_total counter" in body
        assert headers["Cache-Control"] == web.headers["Cache-Control"] == "no-store"
    else:
        assert body == web.content and b"rolegate_" not in body
        assert headers["Content-Type"] == web.headers["Content-Type"]


def test_only_get_and_head_of_metrics_are_answered(settings):
    settings.ROLEGATE_METRICS_TOKEN = TOKEN
    auth = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    assert call({"PATH_INFO": "/", **auth})[0] == 404
    assert call({"PATH_INFO": "/metrics/", **auth})[0] == 404
    status, headers, _ = call({"REQUEST_METHOD": "POST", **auth})
    assert (status, headers["Allow"]) == (405, "GET, HEAD")
    status, headers, body = call({"REQUEST_METHOD": "HEAD", **auth})
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
    assert call({"REQUEST_METHOD": "HEAD"})[0] == 403


# --- the HTTP server ------------------------------------------------------------------------------


@pytest.fixture
def served():
    server = worker_metrics.serve("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()


def test_the_server_checks_the_token(served, settings):
    settings.ROLEGATE_METRICS_TOKEN = TOKEN
    settings.ROLEGATE_METRICS_ALLOWED_NETWORKS = []
    refused = requests.get(served, timeout=10)
    assert refused.status_code == 403 and refused.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    scraped = requests.get(served, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert scraped.status_code == 200
    assert "# TYPE rolegate_iam_role_syncs_total counter" in scraped.text
    assert "rolegate_roles" not in scraped.text  # the database gauges are the web's


def test_the_server_checks_the_tcp_peer_never_forwarded_for(served, settings):
    settings.ROLEGATE_METRICS_TOKEN = None
    settings.ROLEGATE_METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network("10.0.0.0/8")]
    assert requests.get(served, headers={"X-Forwarded-For": "10.1.2.3"}, timeout=10).status_code == 404
    settings.ROLEGATE_METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    assert requests.get(served, timeout=10).status_code == 200


def test_nothing_is_served_until_configured(served, settings):
    settings.ROLEGATE_METRICS_TOKEN = None
    settings.ROLEGATE_METRICS_ALLOWED_NETWORKS = []
    assert requests.get(served, headers={"Authorization": "Bearer anything"}, timeout=10).status_code == 404


def test_an_ipv6_address_is_served():
    try:
        server = worker_metrics.serve("::1", 0)
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    try:
        assert port_open("::1", server.server_port)
    finally:
        server.shutdown()
        server.server_close()


# --- settings and the starting worker ---------------------------------------------------------------


def settings_of(extra: dict[str, str]) -> subprocess.CompletedProcess:
    code = (
        "from django.conf import settings; "
        "print(settings.ROLEGATE_WORKER_METRICS_ADDRESS, settings.ROLEGATE_WORKER_METRICS_PORT)"
    )
    env = {"DJANGO_SETTINGS_MODULE": "portal.settings", "DJANGO_SECRET_KEY": "x" * 50, "PATH": "/usr/bin:/bin", **extra}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)


def test_the_port_and_address_settings():
    assert settings_of({}).stdout.split() == ["127.0.0.1", "0"]  # off, and loopback once on
    both = {"ROLEGATE_WORKER_METRICS_ADDRESS": "::", "ROLEGATE_WORKER_METRICS_PORT": "9100"}
    assert settings_of(both).stdout.split() == ["::", "9100"]
    port = settings_of({"ROLEGATE_WORKER_METRICS_PORT": "70000"})
    assert port.returncode != 0 and "ROLEGATE_WORKER_METRICS_PORT=70000 is outside 0..65535" in port.stderr
    name = settings_of({"ROLEGATE_WORKER_METRICS_ADDRESS": "worker.local"})
    assert name.returncode != 0 and "ROLEGATE_WORKER_METRICS_ADDRESS='worker.local' is not an IP address" in name.stderr


# What portal/celery.py does when Celery's command line starts a worker, before the apps load.
STARTING_WORKER = """
import os, sys
from portal import worker_metrics
assert "prometheus_client" not in sys.modules
prepared = worker_metrics.prepare()
print(prepared)
print(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
if prepared:
    import django
    django.setup()
    from portal import metrics
    metrics.IAM_SYNCS.labels(outcome="updated").inc()
    print(sorted(os.listdir(os.environ["PROMETHEUS_MULTIPROC_DIR"])))
"""


def test_a_starting_worker_counts_into_a_new_folder_of_its_own_removed_at_exit(tmp_path):
    """Even with PROMETHEUS_MULTIPROC_DIR set (for a gunicorn on the same host): a new, empty folder
    under the temporary folder, so neither server sums the other's counts; gone when it exits."""
    gunicorns = tmp_path / "gunicorn-metrics"
    gunicorns.mkdir()
    (gunicorns / "counter_1.db").write_bytes(b"")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DJANGO_SECRET_KEY": "x" * 50,
        "PATH": "/usr/bin:/bin",
        "TMPDIR": str(temporary),
        "PROMETHEUS_MULTIPROC_DIR": str(gunicorns),
        "ROLEGATE_WORKER_METRICS_PORT": "9100",
    }
    out = subprocess.run(
        [sys.executable, "-c", STARTING_WORKER], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    prepared, folder, files = out
    assert prepared == "True"
    assert Path(folder).parent == temporary and Path(folder).name.startswith("rolegate-worker-metrics-")
    assert files.startswith("['counter_") and files.count("counter_") == 1  # this process's file only
    assert not Path(folder).exists()
    assert sorted(p.name for p in gunicorns.iterdir()) == ["counter_1.db"]

    env["ROLEGATE_WORKER_METRICS_PORT"] = "0"
    out = subprocess.run(
        [sys.executable, "-c", STARTING_WORKER], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["False", str(gunicorns)]  # off: nothing changed


def test_too_late_to_prepare_is_said_and_changes_nothing(settings, caplog, monkeypatch):
    """prometheus_client already imported (as in this test process): its counters would stay in
    each process's memory, so the worker serves nothing rather than a part."""
    settings.ROLEGATE_WORKER_METRICS_PORT = 9100
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with caplog.at_level(logging.ERROR, logger="portal.worker_metrics"):
        assert worker_metrics.prepare() is False
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    assert "prometheus_client was imported before the worker started" in caplog.text
