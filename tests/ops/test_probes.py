"""/healthz and /readyz (docs/operations.md "Probes")."""

from __future__ import annotations

import threading

import pytest
import requests
from django.test import override_settings

from portal import probes
from tests.exchange.servers import RolegateServer
from tests.services import free_port, port_open, require


def test_healthz_answers_ok_whatever_the_host_a_kubelet_sends(client):
    # The kubelet probes a pod by its IP; DJANGO_ALLOWED_HOSTS refuses that Host everywhere else.
    response = client.get("/healthz", HTTP_HOST="10.42.0.17:8000")
    assert response.status_code == 200
    assert response.content == b"ok"
    assert response["X-Request-ID"]
    assert client.get("/admin/", HTTP_HOST="10.42.0.17:8000").status_code == 400


@pytest.mark.django_db
def test_readyz_names_each_dependency_when_ready(client):
    response = client.get("/readyz", HTTP_HOST="10.42.0.17:8000")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready" and body["failing"] == []
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["cache"]["status"] == "ok"
    # No CELERY_BROKER_URL in the test settings: tasks run in-process, nothing to reach.
    assert body["checks"]["broker"]["status"] == "skipped"
    assert response["Cache-Control"] == "no-store"


@pytest.mark.django_db
def test_readyz_is_503_naming_an_unreachable_broker(client):
    with override_settings(CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/4"):
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["broker"]
    assert body["checks"]["broker"]["status"] == "failing"
    assert body["checks"]["database"]["status"] == "ok"


@pytest.mark.django_db
def test_readyz_is_503_naming_an_unreachable_cache(client):
    unreachable = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/4",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    with override_settings(CACHES=unreachable):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["cache"]


@pytest.mark.django_db
def test_readyz_with_the_real_redis_cache_and_broker(client):
    require(port_open("127.0.0.1", 6379), "this test needs Redis on 127.0.0.1:6379")
    redis_cache = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:6379/4"}
    }
    with override_settings(CACHES=redis_cache, CELERY_BROKER_URL="redis://127.0.0.1:6379/4"):
        body = client.get("/readyz").json()
    assert body["failing"] == []
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "ok",
        "cache": "ok",
        "broker": "ok",
    }


def test_a_check_that_hangs_is_failing_after_the_deadline_and_does_not_hold_the_answer():
    release = threading.Event()
    hanging = probes.Check("database", lambda: release.wait(30))
    try:
        [result] = probes.run_checks((hanging,), timeout=0.2)
    finally:
        release.set()
    assert result.status == "failing" and result.error == "Timeout"


def test_a_failing_check_shows_the_error_class_not_its_message():
    def refuse():
        raise ConnectionRefusedError("password=hunter2 host=db.internal")

    [result] = probes.run_checks((probes.Check("database", refuse),), timeout=1)
    assert result.status == "failing" and result.error == "ConnectionRefusedError"


@pytest.fixture
def server_without_database(tmp_path):
    """Rolegate (gunicorn) whose PostgreSQL is a closed port: the server answers, its database not."""
    port = free_port()
    server = RolegateServer(
        port=port,
        env={
            "DATABASE_URL": f"postgres://rolegate@127.0.0.1:{free_port()}/rolegate",
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DJANGO_SECRET_KEY": "probe-test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
            "ROLEGATE_ALLOW_HTTP": "1",
            "ROLEGATE_ISSUER": f"http://127.0.0.1:{port}",
        },
        log=tmp_path / "gunicorn.log",
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_readyz_is_503_naming_the_database_while_postgresql_is_unreachable(server_without_database):
    url = server_without_database.url
    assert requests.get(f"{url}/healthz", timeout=10).status_code == 200  # alive, not ready
    response = requests.get(f"{url}/readyz", timeout=10)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["failing"] == ["database"]
    assert body["checks"]["database"] == {
        "status": "failing",
        "seconds": body["checks"]["database"]["seconds"],
        "error": "OperationalError",
    }
    assert body["checks"]["cache"]["status"] == "ok"
