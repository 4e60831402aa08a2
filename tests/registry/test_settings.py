"""Settings from the environment (docs/environment.md), each case in a fresh interpreter with a clean env."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from portal.settings import env_bool, env_int, env_secret

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s" * 20 + "-production-like-secret-key-0123456789abcdefghij"
PRODUCTION = {"ROLEGATE_ISSUER": "https://rolegate.example.com", "DJANGO_SECRET_KEY": SECRET}


def python(code: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DJANGO_SETTINGS_MODULE": "portal.settings", **env}
    return subprocess.run(
        [sys.executable, *(["-c", code] if code else []), *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def settings_of(env: dict[str, str], *names: str) -> dict:
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {list(names)!r}}}, default=str))"
    )
    result = python(code, env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


NO_SECRET = {"ROLEGATE_ISSUER": "https://rolegate.example.com"}
MISSING = "ImproperlyConfigured: DJANGO_SECRET_KEY is not set"


def test_production_without_a_secret_key_refuses_to_start():
    """The WSGI application gunicorn loads stops at import, before any request."""
    result = python("import portal.wsgi", NO_SECRET)
    assert result.returncode != 0
    assert MISSING in result.stderr


def test_a_server_process_starts_with_its_urlconf_loaded_and_its_objects_frozen(tmp_path):
    """portal.startup.freeze_loaded_objects: what the WSGI module loads -- settings, apps, the
    URLconf's views, the registry -- is out of the garbage collector's passes before the first
    request (a database without tables here: the registry is not built, the rest still is)."""
    code = (
        "import gc, sys; import portal.wsgi; "
        "print(len(gc.get_objects()), gc.get_freeze_count(), 'portal.urls' in sys.modules)"
    )
    result = python(code, {**PRODUCTION, "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"})
    assert result.returncode == 0, result.stderr
    tracked, frozen, urls_loaded = result.stdout.split()
    assert urls_loaded == "True"
    assert int(frozen) > 50_000 and int(tracked) < 1_000, (tracked, frozen)


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_celery_worker_and_beat_without_a_secret_key_refuse_to_start(command):
    result = python("", NO_SECRET, "-m", "celery", "-A", "portal", command, "--loglevel=ERROR")
    assert result.returncode != 0
    assert MISSING in result.stderr


@pytest.mark.parametrize("args", [("makemigrations", "--check", "--dry-run"), ("check",), ("help",)])
def test_code_inspection_commands_run_without_a_secret_key(args, tmp_path):
    """docs/environment.md#django_secret_key: reading code and settings needs no secret."""
    result = python("", {**NO_SECRET, "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"}, "manage.py", *args)
    assert result.returncode == 0, result.stderr
    assert "DJANGO_SECRET_KEY" not in result.stderr


def test_without_a_secret_key_any_use_of_it_fails_closed():
    code = "import django; django.setup(); from django.conf import settings; settings.SECRET_KEY"
    result = python(code, NO_SECRET)
    assert result.returncode != 0
    assert "The SECRET_KEY setting must not be empty" in result.stderr


def test_a_command_without_a_secret_key_stops_with_one_line_of_reason():
    """docs/commands.md#conventions: non-zero and a one-line reason on standard error, not a traceback."""
    result = python("", NO_SECRET, "manage.py", "export")
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("DJANGO_SECRET_KEY is not set.")


def test_secret_key_file_is_read(tmp_path):
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    assert settings_of({"DJANGO_SECRET_KEY_FILE": str(path)}, "SECRET_KEY") == {"SECRET_KEY": SECRET}


def test_an_unreadable_secret_key_file_is_a_clear_error(tmp_path):
    result = python("import django; django.setup()", {"DJANGO_SECRET_KEY_FILE": str(tmp_path / "missing")})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY_FILE=" in result.stderr and "cannot be read" in result.stderr


def test_junk_in_a_boolean_variable_refuses_to_start():
    result = python("import django; django.setup()", {**PRODUCTION, "DJANGO_DEBUG": "maybe"})
    assert result.returncode != 0
    assert "DJANGO_DEBUG='maybe' is not a boolean" in result.stderr


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("yes", True), ("TRUE", True), ("0", False), ("no", False)])
def test_env_bool_accepts_the_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("ROLEGATE_TEST_FLAG", raw)
    assert env_bool("ROLEGATE_TEST_FLAG") is expected


@pytest.mark.parametrize("raw", ["maybe", "2", "enabled", "tru"])
def test_env_bool_rejects_junk(monkeypatch, raw):
    monkeypatch.setenv("ROLEGATE_TEST_FLAG", raw)
    with pytest.raises(ImproperlyConfigured, match="is not a boolean"):
        env_bool("ROLEGATE_TEST_FLAG")


def test_env_bool_default_when_unset(monkeypatch):
    monkeypatch.delenv("ROLEGATE_TEST_FLAG", raising=False)
    assert env_bool("ROLEGATE_TEST_FLAG", True) is True


def test_env_int_checks_type_and_range(monkeypatch):
    monkeypatch.setenv("ROLEGATE_TEST_INT", "ten")
    with pytest.raises(ImproperlyConfigured, match="not an integer"):
        env_int("ROLEGATE_TEST_INT", 1)
    monkeypatch.setenv("ROLEGATE_TEST_INT", "500")
    with pytest.raises(ImproperlyConfigured, match="outside"):
        env_int("ROLEGATE_TEST_INT", 1, maximum=300)


def test_env_secret_prefers_the_file(monkeypatch, tmp_path):
    (tmp_path / "s").write_text("from-file\n")
    monkeypatch.setenv("ROLEGATE_TEST_SECRET", "from-env")
    monkeypatch.setenv("ROLEGATE_TEST_SECRET_FILE", str(tmp_path / "s"))
    assert env_secret("ROLEGATE_TEST_SECRET") == "from-file"


def test_check_deploy_is_clean_under_production_like_environment():
    result = python("", PRODUCTION, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_defaults():
    values = settings_of(
        PRODUCTION,
        "DEBUG",
        "ALLOWED_HOSTS",
        "SECURE_SSL_REDIRECT",
        "SESSION_COOKIE_SECURE",
        "CELERY_TASK_ALWAYS_EAGER",
        "DATABASES",
        "ROLEGATE_JWKS_MIN_REFRESH_SECONDS",
    )
    assert values["DEBUG"] is False
    assert values["ROLEGATE_JWKS_MIN_REFRESH_SECONDS"] == 30
    assert values["ALLOWED_HOSTS"] == ["rolegate.example.com", "127.0.0.1", "localhost"]
    assert values["SECURE_SSL_REDIRECT"] is True and values["SESSION_COOKIE_SECURE"] is True
    assert values["CELERY_TASK_ALWAYS_EAGER"] is True  # no CELERY_BROKER_URL: tasks in-process
    assert values["DATABASES"]["default"]["ENGINE"] == "django.db.backends.sqlite3"


def test_the_jwks_refresh_interval_cannot_exceed_the_promised_30_seconds():
    result = python("import django; django.setup()", {**PRODUCTION, "ROLEGATE_JWKS_MIN_REFRESH_SECONDS": "31"})
    assert result.returncode != 0
    assert "ROLEGATE_JWKS_MIN_REFRESH_SECONDS=31 is outside 1..30" in result.stderr


def test_a_new_key_is_published_at_least_as_long_as_verifiers_cache_the_jwks():
    """docs/environment.md#rolegate_key_overlap: no key signs before every cached JWKS lists it."""
    from exchange.oidc_views import CACHE_SECONDS

    refused = python("import django; django.setup()", {**PRODUCTION, "ROLEGATE_KEY_OVERLAP": str(CACHE_SECONDS - 1)})
    assert refused.returncode != 0
    assert f"ROLEGATE_KEY_OVERLAP={CACHE_SECONDS - 1} is outside" in refused.stderr
    assert settings_of({**PRODUCTION, "ROLEGATE_KEY_OVERLAP": str(CACHE_SECONDS)}, "ROLEGATE_KEY_OVERLAP") == {
        "ROLEGATE_KEY_OVERLAP": CACHE_SECONDS
    }


def test_database_url_selects_postgresql_and_a_broker_turns_off_eager_tasks():
    values = settings_of(
        {
            **PRODUCTION,
            "DATABASE_URL": "postgres://rolegate:pw@db:5432/rolegate",
            "CELERY_BROKER_URL": "redis://redis:6379/0",
            "DJANGO_ALLOWED_HOSTS": "a.example, b.example",
        },
        "DATABASES",
        "CELERY_TASK_ALWAYS_EAGER",
        "CELERY_BROKER_URL",
        "ALLOWED_HOSTS",
    )
    database = values["DATABASES"]["default"]
    assert (database["ENGINE"], database["HOST"], database["NAME"]) == (
        "portal.postgresql",  # Django's, with a health check that costs no round trip
        "db",
        "rolegate",
    )
    assert values["CELERY_TASK_ALWAYS_EAGER"] is False
    assert values["CELERY_BROKER_URL"] == "redis://redis:6379/0"
    assert values["ALLOWED_HOSTS"] == ["a.example", "b.example"]


def test_an_http_issuer_with_allow_http_turns_https_enforcement_off():
    values = settings_of(
        {"ROLEGATE_ISSUER": "http://127.0.0.1:8000", "DJANGO_SECRET_KEY": SECRET, "ROLEGATE_ALLOW_HTTP": "1"},
        "SECURE_SSL_REDIRECT",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "ROLEGATE_ALLOW_HTTP",
    )
    assert values == {
        "SECURE_SSL_REDIRECT": False,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "ROLEGATE_ALLOW_HTTP": True,
    }


@pytest.mark.parametrize(
    "env",
    [
        {"ROLEGATE_ISSUER": "http://127.0.0.1:8000"},  # http issuer, ROLEGATE_ALLOW_HTTP off
        {"ROLEGATE_ISSUER": "https://rolegate.example.com", "ROLEGATE_ALLOW_HTTP": "1"},
        {},  # the default issuer is http://127.0.0.1:8000, ROLEGATE_ALLOW_HTTP off
    ],
)
def test_https_enforcement_is_on_unless_allow_http_and_an_http_issuer(env):
    values = settings_of(
        {"DJANGO_SECRET_KEY": SECRET, **env}, "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"
    )
    assert values == {"SECURE_SSL_REDIRECT": True, "SESSION_COOKIE_SECURE": True, "CSRF_COOKIE_SECURE": True}


def test_csrf_trusted_origins_follow_the_issuer_and_the_allowed_hosts():
    values = settings_of(PRODUCTION, "CSRF_TRUSTED_ORIGINS")
    assert values["CSRF_TRUSTED_ORIGINS"] == [
        "https://rolegate.example.com",
        "https://127.0.0.1",
        "https://localhost",
    ]
    values = settings_of(
        {**PRODUCTION, "DJANGO_ALLOWED_HOSTS": "admin.internal,.example.org,*"}, "CSRF_TRUSTED_ORIGINS"
    )
    assert values["CSRF_TRUSTED_ORIGINS"] == [
        "https://rolegate.example.com",
        "https://admin.internal",
        "https://*.example.org",
    ]
    values = settings_of(
        {"ROLEGATE_ISSUER": "http://127.0.0.1:8000", "DJANGO_SECRET_KEY": SECRET, "ROLEGATE_ALLOW_HTTP": "1"},
        "CSRF_TRUSTED_ORIGINS",
    )
    assert values["CSRF_TRUSTED_ORIGINS"] == ["http://127.0.0.1:8000", "http://127.0.0.1", "http://localhost"]
