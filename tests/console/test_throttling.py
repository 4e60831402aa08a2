"""Guessed credentials are throttled (found in review: 60 wrong admin passwords in 14.5 s, then the
right one logged in): django-axes on the admin login, a per-address counter on API tokens."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from console.models import ApiToken
from tests.console.factories import StaffFactory

pytestmark = pytest.mark.django_db
LOGIN = "/admin/login/?next=/admin/"
PASSWORD = "correct horse battery staple"
URL = "/api/v1/audit-events/"


def login(client: Client, password: str, username: str = "platform-admin"):
    return client.post(LOGIN, {"username": username, "password": password})


def test_admin_login_locks_out_after_the_failure_limit_even_with_the_right_password(settings):
    StaffFactory()
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(client, "wrong").status_code == 200  # the form again, with its error
    assert login(client, "wrong").status_code == 429
    response = login(client, PASSWORD)
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_admin_lockout_is_per_username_and_address(settings):
    StaffFactory()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login(Client(REMOTE_ADDR="203.0.113.9"), "wrong")
    assert login(Client(REMOTE_ADDR="203.0.113.9"), PASSWORD).status_code == 429
    assert login(Client(REMOTE_ADDR="198.51.100.4"), PASSWORD).status_code == 302  # another address


def test_a_success_before_the_limit_resets_the_count(settings):
    StaffFactory()
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login(client, "wrong")
    assert login(client, PASSWORD).status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login(client, "wrong")
    assert login(client, PASSWORD).status_code == 302


def bearer(token: str, ip: str = "203.0.113.9"):
    client = APIClient(REMOTE_ADDR=ip)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get(URL)


def test_failed_api_tokens_are_throttled_per_address(settings, staff_token):
    settings.ROLEGATE_API_AUTH_FAILURE_LIMIT = 3
    for _ in range(3):
        assert bearer("rgt_guess").status_code == 401
    throttled = bearer("rgt_guess")
    assert throttled.status_code == 429
    assert throttled.json()["error"] == "slow_down"
    assert 0 < int(throttled["Retry-After"]) <= settings.ROLEGATE_API_AUTH_WINDOW_SECONDS
    assert bearer(staff_token).status_code == 429  # a right token too: guessing must not go on
    assert bearer(staff_token, ip="198.51.100.4").status_code == 200  # another address


def test_good_tokens_are_never_counted(settings, staff_token):
    settings.ROLEGATE_API_AUTH_FAILURE_LIMIT = 2
    for _ in range(5):
        assert bearer(staff_token).status_code == 200


def test_zero_turns_the_api_token_throttle_off(settings):
    settings.ROLEGATE_API_AUTH_FAILURE_LIMIT = 0
    assert all(bearer("rgt_guess").status_code == 401 for _ in range(15))


def test_api_tokens_die_with_a_password_change(staff, staff_token):
    assert bearer(staff_token).status_code == 200
    staff.set_password("a new password for the platform admin")
    staff.save()
    assert bearer(staff_token).status_code == 401
    assert ApiToken.objects.get().revoked


def test_api_tokens_die_with_the_users_deactivation_and_stay_dead(staff, staff_token):
    staff.is_active = False
    staff.save()
    assert bearer(staff_token).status_code == 401
    staff.is_active = True
    staff.save()
    assert bearer(staff_token).status_code == 401
    assert ApiToken.objects.get().revoked


def test_saving_the_user_without_a_password_change_keeps_its_tokens(staff, staff_token):
    """Saving the user without touching the password changes nothing."""
    staff.first_name = "Pat"
    staff.save()
    assert bearer(staff_token).status_code == 200


def test_a_login_without_a_client_address_is_logged_with_none_not_a_stand_in_word(staff):
    """force_login (and any request without REMOTE_ADDR) signs in: axes stores a NULL address,
    never a word such as "unknown" that PostgreSQL's inet column refuses."""
    from axes.models import AccessLog

    from console.throttling import request_client_ip

    assert request_client_ip(type("Request", (), {"META": {}})()) is None
    Client().force_login(staff)
    assert AccessLog.objects.get(username=staff.get_username()).ip_address is None
