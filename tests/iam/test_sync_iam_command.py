"""``manage.py sync_iam`` end to end against a real moto server (AWS_ENDPOINT_URL)."""

from __future__ import annotations

import io
import os

import pytest
from django.core.management import CommandError, call_command

from mappings import policies
from mappings.iam import aws_iam
from tests.iam.helpers import PLACEHOLDER, ROLEGATE, create_iam_role, live_policy, registry

pytestmark = pytest.mark.django_db


def run(*args) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("sync_iam", *args, stdout=out)
    except CommandError:
        return 1, out.getvalue()
    return 0, out.getvalue()


def test_sync_iam_end_to_end(moto_server, settings):
    settings.ROLEGATE_ISSUER = ROLEGATE
    assert os.environ["AWS_ENDPOINT_URL"] == moto_server
    _, account, roles = registry(roles=("deploy-web", "deploy-api"))
    for role in roles:
        create_iam_role(role.name)

    code, out = run()
    assert code == 0, out
    assert out.splitlines() == [
        "provider prod/rolegate.example.com: created",
        "role prod/deploy-api: updated",
        "role prod/deploy-web: updated",
        "synced 3: 1 created, 2 updated",
    ]
    for role in roles:
        assert "rolegate.example.com:sub" in str(live_policy(role.name))

    aws_iam.iam_client().update_assume_role_policy(RoleName="deploy-web", PolicyDocument=policies.minify(PLACEHOLDER))
    code, out = run("--check")
    assert code == 1
    assert "role prod/deploy-web: differs" in out and "role prod/deploy-api: unchanged" in out
    assert "--- role prod/deploy-web (live)" in out and "+++ role prod/deploy-web (desired)" in out
    assert any(line.startswith("-") and '"Service": "ec2.amazonaws.com"' in line for line in out.splitlines())
    assert live_policy("deploy-web") == PLACEHOLDER  # --check changed nothing

    code, out = run("--account", account.name)
    assert code == 0 and "role prod/deploy-web: updated: drift repaired" in out
    assert run("--check")[0] == 0

    code, out = run()
    assert code == 0
    assert out.splitlines()[-1] == "synced 3: 3 unchanged"


def test_sync_iam_unknown_account(db):
    with pytest.raises(CommandError, match="No account is named 'nope'"):
        call_command("sync_iam", "--account", "nope", stdout=io.StringIO())


def test_sync_iam_reports_failures_and_exits_non_zero(moto_server, settings):
    settings.ROLEGATE_ISSUER = ROLEGATE
    registry()  # the IAM role is never created
    code, out = run()
    assert code == 1
    assert "role prod/deploy-web: failed: NoSuchEntity" in out
