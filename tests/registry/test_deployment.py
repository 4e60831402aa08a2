"""docker-compose.yml and the Dockerfile (no Docker engine here: checked against the compose
specification and for the services and commands production needs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_follows_the_compose_specification():
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_every_process_rolegate_needs():
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "migrate", "web", "worker", "beat"}
    assert services["web"]["command"][:2] == ["gunicorn", "portal.wsgi:application"]
    assert services["web"]["command"][2:4] == ["--config", "gunicorn.conf.py"]  # metrics of every worker
    assert services["worker"]["command"][:4] == ["celery", "-A", "portal", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "portal", "beat"]
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--no-input"]
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert services["migrate"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }


def test_every_long_running_service_has_a_health_check():
    services = compose()["services"]
    for name in ("postgres", "redis", "web", "worker", "beat"):
        assert services[name]["healthcheck"]["test"], name
    # Healthy means ready: database, cache and broker reachable (portal.probes).
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])


def test_app_services_share_the_environment_and_read_the_secret_key_from_a_secret():
    data = compose()
    for name in ("migrate", "web", "worker", "beat"):
        service = data["services"][name]
        env = service["environment"]
        assert env["DATABASE_URL"].startswith("postgres://rolegate:") and env["DATABASE_URL"].endswith(
            "@postgres:5432/rolegate"
        )
        assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0"
        assert env["DJANGO_SECRET_KEY_FILE"] == "/run/secrets/django_secret_key"
        assert "DJANGO_SECRET_KEY" not in env
        assert "DJANGO_DEBUG" not in env
        assert service["secrets"] == ["django_secret_key"]
    assert data["secrets"]["django_secret_key"] == {"file": "./secrets/django_secret_key"}


def test_data_lives_in_named_volumes():
    data = compose()
    assert "postgres-data:/var/lib/postgresql/data" in data["services"]["postgres"]["volumes"]
    assert "redis-data:/data" in data["services"]["redis"]["volumes"]
    assert set(data["volumes"]) == {"postgres-data", "redis-data"}


def test_dockerfile_builds_a_non_root_gunicorn_image():
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    user = [line for line in instructions if line.startswith("USER ")]
    assert user and user[-1] not in ("USER root", "USER 0")
    assert any("collectstatic --no-input" in line for line in instructions)
    assert instructions[-1].startswith('CMD ["gunicorn", "portal.wsgi:application", "--config", "gunicorn.conf.py"')
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", ".env", "secrets/", ".dev-secret-key", "db.sqlite3"} <= set(ignored)


def test_readme_keeps_the_two_commands_and_the_performance_heading():
    readme = (ROOT / "README.md").read_text()
    assert "`make run`" in readme and "`make test`" in readme
    assert "\n## Performance\n" in readme


def test_compose_trusts_exactly_the_proxy_it_documents():
    """The compose file puts one reverse proxy in front (web is published on loopback only): the
    default must read X-Forwarded-For from it, and only from it (issue 12: a default of 0 proxies
    made every client the proxy's address, one rate-limit bucket for all)."""
    import ipaddress
    import re

    data = compose()
    env = data["services"]["web"]["environment"]
    default = lambda value: re.fullmatch(r"\$\{\w+:-(.*)\}", value).group(1)  # noqa: E731
    assert default(env["ROLEGATE_TRUSTED_PROXIES"]) == "1"
    trusted = [ipaddress.ip_network(item) for item in default(env["ROLEGATE_TRUSTED_PROXY_NETWORKS"]).split(",")]
    (ipam,) = data["networks"]["default"]["ipam"]["config"]
    gateway = ipaddress.ip_address(ipam["gateway"])
    assert gateway in ipaddress.ip_network(ipam["subnet"])
    assert trusted == [ipaddress.ip_network(f"{gateway}/32")]
    assert data["services"]["web"]["ports"] == ["127.0.0.1:8000:8000"]


def test_the_worker_serves_its_metrics_on_loopback_with_the_webs_access_check():
    """The IAM syncs are counted in the worker (docs/operations.md "Metrics"): it serves them on a
    port published on loopback, and web and worker take the same scrape settings from .env."""
    data = compose()
    worker = data["services"]["worker"]
    port = worker["environment"]["ROLEGATE_WORKER_METRICS_PORT"]
    assert worker["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert worker["environment"]["ROLEGATE_WORKER_METRICS_ADDRESS"] == "0.0.0.0"  # reachable from the host
    assert "ROLEGATE_WORKER_METRICS_PORT" not in data["services"]["web"]["environment"]
    for name in ("web", "worker"):
        env = data["services"][name]["environment"]
        assert env["ROLEGATE_METRICS_TOKEN"] == "${ROLEGATE_METRICS_TOKEN:-}", name
        assert env["ROLEGATE_METRICS_ALLOWED_NETWORKS"] == "${ROLEGATE_METRICS_ALLOWED_NETWORKS:-}", name


def test_the_shipped_gunicorn_config_runs_threaded_workers():
    """The shape README "Performance" measures: a worker keeps serving while a request waits on
    STS. Read the way gunicorn reads it (every deployment passes --config gunicorn.conf.py)."""
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "--config",
            "gunicorn.conf.py",
            "--print-config",
            "portal.wsgi",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    pairs = (line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    config = {name.strip(): value.strip() for name, value in pairs}
    assert config["worker_class"] == "portal.gunicorn_worker.RolegateWorker"
    assert int(config["threads"]) >= 4
