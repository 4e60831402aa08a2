"""docs/api.md#authentication: the platform API is authenticated with a personal API token only.
A superuser's admin session cookie is not a credential there: without a token the answer is 401
(so that a page an admin visits cannot read the audit log, or explain, through their browser)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.console.factories import StaffFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("get", "/api/v1/audit-events/", None), ("post", "/api/v1/explain", {"issuer": "x", "claims": {}})],
)
def test_an_admin_session_without_a_token_is_401(method, path, body):
    admin = StaffFactory(username="root", is_superuser=True)
    client = APIClient()
    client.force_login(admin)
    assert client.get("/admin/").status_code == 200  # the session itself is good
    response = getattr(client, method)(path, body, format="json") if body else getattr(client, method)(path)
    assert response.status_code == 401, response.content
    assert response.json()["error"] == "unauthorized"
