"""Personal API tokens: stored hashed, Bearer authentication, 401/403, the create command, the admin."""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command, execute_from_command_line
from django.utils import timezone
from rest_framework.test import APIClient

from console.models import ApiToken
from console.services import api_token_create
from tests.console.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/audit-events/"


def _get(token: str | None, header: str | None = None):
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    elif token is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get(URL)


def test_token_is_stored_as_its_sha256_only(staff):
    token, raw = api_token_create(user=staff, name="siem")
    row = ApiToken.objects.get(pk=token.pk)
    assert row.token_sha256 == hashlib.sha256(raw.encode()).hexdigest()
    assert raw.startswith(row.prefix)
    assert all(raw not in str(value) for value in ApiToken.objects.filter(pk=token.pk).values().first().values())


def test_staff_token_is_accepted_and_marks_last_use(staff_token):
    response = _get(staff_token)
    assert response.status_code == 200
    assert ApiToken.objects.get().last_used_at is not None


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer rgt_not-a-token", "Bearer a b", "Basic dXNlcjpwYXNz"],
    ids=["missing", "empty", "unknown", "two-parts", "basic"],
)
def test_missing_or_invalid_token_is_401_with_the_error_body(db, header):
    response = _get(None, header=header)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert set(response.json()) == {"error", "error_description", "request_id"}
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["request_id"] == response["X-Request-ID"]


def test_revoked_expired_and_inactive_tokens_are_401(staff):
    revoked, raw_revoked = api_token_create(user=staff, name="old")
    ApiToken.objects.filter(pk=revoked.pk).update(revoked=True)
    _, raw_expired = api_token_create(user=staff, name="exp", expires_at=timezone.now() - timedelta(seconds=1))
    inactive = UserFactory(username="gone", is_staff=True, is_active=False)
    _, raw_inactive = api_token_create(user=inactive, name="gone")
    for raw in (raw_revoked, raw_expired, raw_inactive):
        assert _get(raw).status_code == 401


def test_non_staff_user_is_403(developer_token):
    response = _get(developer_token)
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


def test_create_api_token_prints_a_working_token_alone_on_the_last_line(db):
    StaffFactory(username="ops")
    out = io.StringIO()
    call_command("create_api_token", "ops", stdout=out)
    raw = out.getvalue().strip().splitlines()[-1]
    assert raw.startswith("rgt_") and " " not in raw
    assert _get(raw).status_code == 200
    assert ApiToken.objects.get().user.username == "ops"


def test_create_api_token_for_an_unknown_user_fails(db):
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        call_command("create_api_token", "nobody")
    assert not ApiToken.objects.exists()


def test_create_api_token_exits_non_zero_with_one_line_on_stderr(db, capsys):
    """As manage.py runs it (execute_from_command_line), for an unknown user."""
    with pytest.raises(SystemExit) as exit_info:
        execute_from_command_line(["manage.py", "create_api_token", "nobody"])
    assert exit_info.value.code != 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip().count("\n") == 0
    assert "nobody" in err


def test_admin_add_shows_the_token_once_and_stores_its_hash(client, staff):
    client.force_login(staff)
    response = client.post(
        "/admin/console/apitoken/add/", {"user": staff.pk, "name": "siem", "expires_at_0": "", "expires_at_1": ""}
    )
    assert response.status_code == 200
    raw = response.context["raw_token"]
    assert raw in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    token = ApiToken.objects.get(name="siem")
    assert token.token_sha256 == hashlib.sha256(raw.encode()).hexdigest()
    # The change page never shows it again.
    page = client.get(f"/admin/console/apitoken/{token.pk}/change/").content.decode()
    assert raw not in page and token.prefix in page


def test_admin_revoke_action(client, staff, staff_token):
    client.force_login(staff)
    token = ApiToken.objects.get()
    client.post("/admin/console/apitoken/", {"action": "revoke_selected", "_selected_action": [token.pk]})
    assert ApiToken.objects.get().revoked
    assert _get(staff_token).status_code == 401


def test_staff_without_superuser_manage_only_their_own_tokens(client, staff):
    from django.contrib.auth.models import Permission

    ops = UserFactory(username="ops", is_staff=True)
    ops.user_permissions.set(Permission.objects.filter(content_type__app_label="console"))
    theirs, _ = api_token_create(user=staff, name="admin's")
    client.force_login(ops)
    assert "admin&#x27;s" not in client.get("/admin/console/apitoken/").content.decode()
    assert client.get(f"/admin/console/apitoken/{theirs.pk}/change/").status_code == 302  # not found -> index
    response = client.post(
        "/admin/console/apitoken/add/", {"user": staff.pk, "name": "escalate", "expires_at_0": "", "expires_at_1": ""}
    )
    assert not ApiToken.objects.filter(name="escalate").exists()
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    client.post(
        "/admin/console/apitoken/add/", {"user": ops.pk, "name": "mine", "expires_at_0": "", "expires_at_1": ""}
    )
    assert ApiToken.objects.get(name="mine").user == ops
