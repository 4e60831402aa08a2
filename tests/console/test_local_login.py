"""Local password sign-in: on by default; ROLEGATE_LOCAL_LOGIN=0 turns it off, except for
superusers while ROLEGATE_BREAK_GLASS=1 (docs/operations.md "Signing in with GitLab").

Personas: ``root``, the break-glass superuser created with ``manage.py createsuperuser``;
``ops``, a staff user with a local password from before GitLab sign-in.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

User = get_user_model()
PASSWORD = "a-long-local-password-42"


@pytest.fixture
def root(db):
    return User.objects.create_superuser("root", "root@example.com", PASSWORD)


@pytest.fixture
def ops(db):
    return User.objects.create_user("ops", "ops@example.com", PASSWORD, is_staff=True)


def log_in(client, username):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": PASSWORD, "next": "/admin/"})


def test_local_login_works_by_default(client, ops):
    assert log_in(client, "ops").status_code == 302
    assert client.get("/admin/").status_code == 200


def test_turned_off_nobody_signs_in_with_a_password(client, settings, root, ops):
    settings.ROLEGATE_LOCAL_LOGIN = False
    for username in ("ops", "root"):
        response = log_in(client, username)
        assert response.status_code == 200  # the login page again, with its error
        assert client.get("/admin/").status_code == 302
    page = client.get("/admin/login/").content.decode()
    assert 'name="password"' not in page


def test_break_glass_lets_superusers_in_and_only_them(client, settings, root, ops, caplog):
    settings.ROLEGATE_LOCAL_LOGIN = False
    settings.ROLEGATE_BREAK_GLASS = True
    assert "Break-glass" in client.get("/admin/login/").content.decode()
    assert log_in(client, "ops").status_code == 200
    assert log_in(client, "root").status_code == 302
    assert client.get("/admin/").status_code == 200
    assert "break-glass: superuser root signed in with a local password" in caplog.text


def test_turning_local_login_off_ends_password_sessions(client, settings, ops):
    assert log_in(client, "ops").status_code == 302
    settings.ROLEGATE_LOCAL_LOGIN = False
    assert client.get("/admin/").status_code == 302
