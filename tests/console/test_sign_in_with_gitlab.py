"""Signing in with GitLab: the real authorization-code flow against a real local OpenID Connect
provider (oidc-provider-mock, on a free loopback port), landing in the console with the
permissions the user's GitLab groups give (docs/operations.md "Signing in with GitLab").

Personas (users of the provider, by their GitLab groups):
- ``ada``: a platform admin (direct member of ``platform/rolegate-admins``);
- ``sam``: a security auditor (member of ``security/Auditors``, written in another case);
- ``dev``: a developer in ``platform/web`` only, which Rolegate does not accept.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from django.urls import reverse
from oidc_provider_mock import run_server_in_thread

from console.sso import provider as sso_provider
from console.sso.backends import GitLabBackend
from tests.console.factories import StaffFactory

User = get_user_model()
ADMINS = "platform/rolegate-admins"
AUDITORS = "security/auditors"


@pytest.fixture(scope="session")
def gitlab():
    """A real OpenID Connect provider on 127.0.0.1; clients must be registered, as on GitLab."""
    with run_server_in_thread(require_client_registration=True, require_nonce=True) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture(scope="session")
def gitlab_application(gitlab):
    """The GitLab application (client id and secret) registered for the test server's callback."""
    response = requests.post(
        f"{gitlab}/oauth2/clients",
        json={
            "redirect_uris": ["http://testserver/oidc/callback/"],
            "token_endpoint_auth_method": "client_secret_basic",
        },
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def gitlab_user(gitlab: str, sub: str, **claims) -> None:
    requests.put(f"{gitlab}/users/{sub}", json=claims, timeout=10).raise_for_status()


@pytest.fixture
def sso(settings, gitlab, gitlab_application, db):
    settings.ROLEGATE_OIDC_ISSUER = gitlab
    settings.OIDC_RP_CLIENT_ID = gitlab_application["client_id"]
    settings.OIDC_RP_CLIENT_SECRET = gitlab_application["client_secret"]
    settings.ROLEGATE_OIDC_ADMIN_GROUPS = [ADMINS]
    settings.ROLEGATE_OIDC_AUDITOR_GROUPS = [AUDITORS]
    sso_provider.forget()
    people = [
        ("1001", "ada", "Ada Admin", [ADMINS, "platform"]),
        ("1002", "sam", "Sam Audit", ["Security/Auditors"]),
        ("1003", "dev", "Dev Eloper", ["platform/web"]),
    ]
    for sub, nickname, name, groups in people:
        gitlab_user(gitlab, sub, nickname=nickname, name=name, email=f"{nickname}@example.com", groups_direct=groups)
    yield gitlab
    sso_provider.forget()


def sign_in(client, gitlab: str, sub: str, next_url: str = "/admin/"):
    """The browser's part of the flow: Rolegate -> GitLab's authorize endpoint (the user picks
    ``sub``) -> Rolegate's callback, which redeems the code at GitLab's token endpoint."""
    start = client.get(reverse("oidc_authentication_init"), {"next": next_url})
    assert start.status_code == 302
    authorize = urlsplit(start["Location"])
    assert f"{authorize.scheme}://{authorize.netloc}" == gitlab
    params = parse_qs(authorize.query)
    assert params["scope"] == ["openid profile email"]
    assert params["code_challenge_method"] == ["S256"] and params["nonce"] and params["state"]
    consent = requests.post(start["Location"], data={"sub": sub}, allow_redirects=False, timeout=10)
    assert consent.status_code == 302, consent.text
    callback = urlsplit(consent.headers["Location"])
    assert callback.path == "/oidc/callback/" and "code=" in callback.query
    return client.get(f"{callback.path}?{callback.query}")


def test_a_platform_admin_lands_in_the_console_with_full_registry_permissions(client, sso):
    response = sign_in(client, sso, "1001", next_url="/admin/mappings/mapping/")
    assert response.status_code == 302 and response["Location"] == "/admin/mappings/mapping/"

    user = User.objects.get(username="gitlab:1001")
    assert user.is_staff and not user.is_superuser and not user.has_usable_password()
    assert (user.email, user.first_name) == ("ada@example.com", "Ada Admin")
    assert [g.name for g in user.groups.all()] == ["Rolegate admins"]
    for perm in ("mappings.add_mapping", "mappings.change_role", "mappings.delete_issuer", "exchange.view_auditevent"):
        assert user.has_perm(perm), perm
    assert not user.has_perm("auth.change_user")

    assert client.get("/admin/").status_code == 200
    assert client.get(reverse("admin:mappings_mapping_add")).status_code == 200
    assert client.get(reverse("admin:exchange_auditevent_changelist")).status_code == 200


def test_an_auditor_can_look_at_everything_and_change_nothing(client, sso):
    assert sign_in(client, sso, "1002")["Location"] == "/admin/"
    user = User.objects.get(username="gitlab:1002")
    assert user.is_staff and [g.name for g in user.groups.all()] == ["Rolegate auditors"]
    assert user.has_perm("mappings.view_mapping") and user.has_perm("exchange.view_auditevent")
    assert not user.has_perm("mappings.change_mapping") and not user.has_perm("mappings.add_mapping")

    assert client.get(reverse("admin:mappings_mapping_changelist")).status_code == 200
    assert client.get(reverse("admin:exchange_auditevent_changelist")).status_code == 200
    assert client.get(reverse("admin:mappings_mapping_add")).status_code == 403


def test_someone_outside_every_group_is_refused_with_the_groups_rolegate_accepts(client, sso):
    response = sign_in(client, sso, "1003")
    assert response.status_code == 403
    page = response.content.decode()
    assert "dev" in page and ADMINS in page and AUDITORS in page
    assert not User.objects.filter(username="gitlab:1003").exists()
    assert client.get("/admin/").status_code == 302  # not signed in


def test_groups_are_synced_on_every_sign_in(client, sso):
    sign_in(client, sso, "1001")
    ada = User.objects.get(username="gitlab:1001")
    assert ada.has_perm("mappings.change_mapping")

    gitlab_user(sso, "1001", nickname="ada", email="ada@example.com", groups_direct=[AUDITORS])
    client.logout()
    sign_in(client, sso, "1001")
    ada = User.objects.get(pk=ada.pk)  # fresh permission cache
    assert [g.name for g in ada.groups.all()] == ["Rolegate auditors"]
    assert not ada.has_perm("mappings.change_mapping") and ada.has_perm("mappings.view_mapping")

    gitlab_user(sso, "1001", nickname="ada", email="ada@example.com", groups_direct=[])
    client.logout()
    assert sign_in(client, sso, "1001").status_code == 403
    ada = User.objects.get(pk=ada.pk)
    assert not ada.is_staff and not ada.groups.exists()


def test_a_gitlab_account_never_takes_over_a_local_user_with_the_same_email(client, sso):
    local = StaffFactory(username="root", email="ada@example.com")
    sign_in(client, sso, "1001")
    local.refresh_from_db()
    assert local.is_superuser and not local.groups.exists()
    assert User.objects.get(username="gitlab:1001").pk != local.pk


def test_the_login_page_offers_gitlab(client, sso):
    page = client.get("/admin/login/?next=/admin/").content.decode()
    assert "Sign in with GitLab" in page
    assert 'name="password"' in page


def test_no_gitlab_button_and_no_flow_unless_configured(client, db, settings):
    settings.ROLEGATE_OIDC_ISSUER = ""
    assert "Sign in with GitLab" not in client.get("/admin/login/").content.decode()
    assert client.get(reverse("oidc_authentication_init")).status_code == 404


def test_an_id_token_for_another_client_or_issuer_is_refused(settings, sso):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    backend = GitLabBackend()
    backend.OIDC_RP_SIGN_ALGO = "RS256"
    backend.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
    good = {"iss": sso, "aud": settings.OIDC_RP_CLIENT_ID, "sub": "1001", "iat": 1, "exp": 4_000_000_000}
    assert backend._verify_jws(jwt.encode(good, key, "RS256"), public)["sub"] == "1001"
    for changed in ({"aud": "another-application"}, {"iss": "https://gitlab.evil.example"}):
        with pytest.raises(SuspiciousOperation):
            backend._verify_jws(jwt.encode({**good, **changed}, key, "RS256"), public)
