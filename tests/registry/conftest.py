"""Registry test helpers: configuration documents built from Python data."""

from __future__ import annotations

import copy

import pytest
import yaml
from django.contrib.auth import get_user_model

# The smallest useful configuration: the web team's main branch may deploy web in prod.
MINIMAL = {
    "issuers": [
        {"name": "gitlab-example", "url": "https://gitlab.example.com", "audiences": ["https://rolegate.example.com"]}
    ],
    "accounts": [{"name": "prod", "account_id": "123456789012"}],
    "roles": [{"account": "prod", "name": "deploy-web"}],
    "mappings": [
        {
            "name": "web-main",
            "issuer": "gitlab-example",
            "role": "prod/deploy-web",
            "project": "platform/web",
            "ref": "main",
        }
    ],
}


def as_yaml(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture
def minimal() -> dict:
    """A fresh copy of MINIMAL to modify."""
    return copy.deepcopy(MINIMAL)


@pytest.fixture
def platform_admin(client):
    """The platform admin: a superuser logged in to the admin."""
    user = get_user_model().objects.create_superuser("platform-admin", "admin@example.com", "x")
    client.force_login(user)
    return client


def mapping_form(issuer, role, **overrides) -> dict:
    """The admin's add-mapping form: the web team's protected main branch; an override of ``None``
    leaves the field out."""
    data = {
        "name": "web-main",
        "issuer": issuer.pk,
        "role": role.pk,
        "project": "platform/web",
        "ref": "main",
        "ref_type": "branch",
        "protected": "on",
        "environment": "",
        "pipeline_sources": ["push", "web"],
        "expires_at_0": "",
        "expires_at_1": "",
        "enabled": "on",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}
