"""Console fixtures: the platform admin with an API token, and an API client using it."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from console.services import api_token_create
from tests.console.factories import StaffFactory, UserFactory


@pytest.fixture
def staff(db):
    """The platform admin: staff and superuser."""
    return StaffFactory()


@pytest.fixture
def admin_client(client, staff):
    """A browser session of the platform admin in the Django admin."""
    client.force_login(staff)
    return client


@pytest.fixture
def staff_token(staff) -> str:
    return api_token_create(user=staff, name="tests")[1]


@pytest.fixture
def api(staff_token) -> APIClient:
    """An API client authenticated as the platform admin."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {staff_token}")
    return client


@pytest.fixture
def developer_token(db) -> str:
    """A developer (not staff) who somehow has an API token: the API refuses them."""
    return api_token_create(user=UserFactory(username="dev"), name="dev")[1]
