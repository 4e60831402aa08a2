"""Registry test helpers: configuration documents built from Python data."""

from __future__ import annotations

import copy

import pytest
import yaml

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
