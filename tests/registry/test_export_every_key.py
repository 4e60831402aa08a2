"""docs/configuration.md: ``export`` prints the current state in the format ``apply`` reads, every
key of the reference included. The demo round trip (test_config_apply.py) leaves some keys at
their defaults (a ``jwks_url``, a second audience, ``session_tags: false``...); here a file that
sets every documented key to something other than its default comes back from ``export`` as it
went in, and applies as "No changes."."""

from __future__ import annotations

import io

import pytest
import yaml
from django.core.management import call_command

from tests.registry.conftest import as_yaml

pytestmark = pytest.mark.django_db

EVERY_KEY = {
    "issuers": [
        {
            "name": "gitlab-self",
            "url": "https://gitlab.example.com",
            "audiences": ["https://rolegate.example.com", "https://rolegate-eu.example.com"],
            "jwks_url": "https://gitlab.example.com/-/jwks",
        }
    ],
    "accounts": [
        {
            "name": "prod",
            "account_id": "123456789012",
            "mode": "brokered",
            "audience": "rolegate.example.com",
            "manager_role_arn": "arn:aws:iam::123456789012:role/rolegate-manager",
            "trust_policy_limit": 4096,
        },
        {
            "name": "legacy",
            "account_id": "210987654321",
            "mode": "direct",
            "audience": "sts.amazonaws.com",
            "manager_role_arn": None,
            "trust_policy_limit": 2048,
        },
    ],
    "roles": [
        {"account": "prod", "name": "deploy-web", "max_session_seconds": 7200, "session_tags": True},
        {"account": "prod", "name": "readonly", "max_session_seconds": 900, "session_tags": False},
        {"account": "legacy", "name": "deploy-old", "max_session_seconds": 43200, "session_tags": True},
    ],
    "mappings": [
        {
            "name": "web-release-production",
            "issuer": "gitlab-self",
            "role": "prod/deploy-web",
            "project": "platform/web?",
            "ref": "v*",
            "ref_type": "tag",
            "protected": True,
            "environment": "production*",
            "pipeline_sources": ["push", "web"],
            "expires_at": "2031-05-06T07:08:09Z",
            "enabled": False,
        },
        {
            "name": "platform-read",
            "issuer": "gitlab-self",
            "role": "prod/readonly",
            "project": "platform/*",
            "ref": "*",
            "ref_type": "branch",
            "protected": False,
        },
        {
            "name": "legacy-web",
            "issuer": "gitlab-self",
            "role": "legacy/deploy-old",
            "project": "platform/web",
            "ref": "main",
            "ref_type": "any",
        },
    ],
}


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def normalised(value):
    """YAML reads an unquoted timestamp as a datetime: compare it as the ISO string it means."""
    if isinstance(value, dict):
        return {k: normalised(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalised(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat().replace("+00:00", "Z")
    return value


def test_every_documented_key_comes_back_from_export_as_it_went_in(tmp_path):
    path = tmp_path / "rolegate.yaml"
    path.write_text(as_yaml(EVERY_KEY))
    run("apply", str(path))

    exported = run("export")
    document = normalised(yaml.safe_load(exported))
    for section, objects in EVERY_KEY.items():
        by_name = {(o.get("account"), o["name"]): o for o in document[section]}
        assert len(by_name) == len(objects), section
        for written in objects:
            read = by_name[(written.get("account"), written["name"])]
            assert {key: read.get(key) for key in written} == written, (section, written["name"])

    again = tmp_path / "exported.yaml"
    again.write_text(exported)
    assert run("apply", str(again), "--prune").startswith("No changes.")
