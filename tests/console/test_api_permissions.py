"""The platform API checks the model permissions of the matching console page (found in review:
a staff user refused by every page read the audit log and the mappings through the API)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from rest_framework.test import APIClient

from console.services import api_token_create
from tests.console.factories import AuditEventFactory, UserFactory
from tests.factories import web_main_deploy

pytestmark = pytest.mark.django_db

AUDIT = ("get", "/api/v1/audit-events/", None)
EXPLAIN = ("post", "/api/v1/explain", {"issuer": "no-such-issuer", "claims": {}})
VIEW_AUDIT = ("exchange", "view_auditevent")
VIEW_MAPPING = ("mappings", "view_mapping")


def staff_api(*perms: tuple[str, str]) -> APIClient:
    """A staff user (not superuser) holding exactly ``perms``, with an API token."""
    user = UserFactory(username="auditor", is_staff=True)
    for app_label, codename in perms:
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=user, name='t')[1]}")
    return client


def call(client: APIClient, endpoint):
    method, url, body = endpoint
    return getattr(client, method)(url, body, format="json") if body is not None else getattr(client, method)(url)


@pytest.mark.parametrize(
    ("endpoint", "needed", "other"),
    [(AUDIT, VIEW_AUDIT, VIEW_MAPPING), (EXPLAIN, VIEW_MAPPING, VIEW_AUDIT)],
    ids=["audit-events", "explain"],
)
def test_staff_without_the_pages_permission_is_403(endpoint, needed, other):
    AuditEventFactory()
    for perms in [(), (other,)]:
        response = call(staff_api(*perms), endpoint)
        assert response.status_code == 403, response.content
        body = response.json()
        assert body["error"] == "forbidden"
        assert ".".join(needed) in body["error_description"]
        assert "results" not in body and "mappings" not in body


def test_audit_events_with_view_auditevent_is_200():
    event = AuditEventFactory()
    response = call(staff_api(VIEW_AUDIT), AUDIT)
    assert response.status_code == 200, response.content
    assert [e["request_id"] for e in response.json()["results"]] == [event.request_id]


def test_explain_with_view_mapping_is_200(web_main_claims):
    web_main_deploy()
    response = staff_api(VIEW_MAPPING).post(
        "/api/v1/explain", {"issuer": "gitlab-example", "claims": web_main_claims}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["decision"] == "granted"


def test_the_pages_refuse_the_same_user():
    """The reference the API follows: the console pages refuse a staff user without the permissions."""
    user = UserFactory(username="auditor", is_staff=True)
    client = Client()
    client.force_login(user)
    assert client.get("/admin/rolegate/dashboard/").status_code == 403
    assert client.get("/admin/rolegate/explain/").status_code == 403
    assert client.get("/admin/exchange/auditevent/").status_code == 403
