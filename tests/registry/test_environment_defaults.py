"""The defaults of docs/environment.md that test_settings.py leaves unasserted, each in a fresh
interpreter with a clean environment: what Rolegate is with nothing set but a secret, development
mode's generated secret, and every spelling that turns ROLEGATE_ALLOW_HTTP on."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.registry.test_settings import ROOT, SECRET, settings_of


def test_with_nothing_but_a_secret_set():
    values = settings_of(
        {"DJANGO_SECRET_KEY": SECRET},
        "ROLEGATE_ISSUER",
        "ROLEGATE_ALLOW_HTTP",
        "DEBUG",
        "DATABASES",
        "ALLOWED_HOSTS",
        "CELERY_TASK_ALWAYS_EAGER",
    )
    assert values["ROLEGATE_ISSUER"] == "http://127.0.0.1:8000"
    assert values["ROLEGATE_ALLOW_HTTP"] is False and values["DEBUG"] is False
    database = values["DATABASES"]["default"]
    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert Path(database["NAME"]).parent == ROOT  # a file in the project folder
    assert set(values["ALLOWED_HOSTS"]) == {"127.0.0.1", "localhost"}
    assert values["CELERY_TASK_ALWAYS_EAGER"] is True


def test_allowed_hosts_default_to_the_issuers_host_without_its_port():
    values = settings_of(
        {"DJANGO_SECRET_KEY": SECRET, "ROLEGATE_ISSUER": "https://rolegate.example.com:8443/"},
        "ALLOWED_HOSTS",
        "ROLEGATE_ISSUER",
    )
    assert values["ALLOWED_HOSTS"] == ["rolegate.example.com", "127.0.0.1", "localhost"]


def test_development_mode_generates_a_secret_and_shows_debug_pages():
    generated = ROOT / ".dev-secret-key"
    existed = generated.exists()
    try:
        values = settings_of({"DJANGO_DEBUG": "1"}, "DEBUG", "SECRET_KEY")
        assert values["DEBUG"] is True
        assert len(values["SECRET_KEY"]) >= 50
        assert settings_of({"DJANGO_DEBUG": "1"}, "SECRET_KEY") == {"SECRET_KEY": values["SECRET_KEY"]}  # kept
    finally:
        if not existed:
            generated.unlink(missing_ok=True)


@pytest.mark.parametrize("spelling", ["1", "true", "yes"])
def test_each_documented_spelling_turns_allow_http_on(spelling):
    values = settings_of(
        {"DJANGO_SECRET_KEY": SECRET, "ROLEGATE_ALLOW_HTTP": spelling},
        "ROLEGATE_ALLOW_HTTP",
        "SECURE_SSL_REDIRECT",
        "SESSION_COOKIE_SECURE",
    )
    # The default issuer is http://: with ROLEGATE_ALLOW_HTTP on, HTTPS enforcement is off.
    assert values == {"ROLEGATE_ALLOW_HTTP": True, "SECURE_SSL_REDIRECT": False, "SESSION_COOKIE_SECURE": False}
