"""Fixtures for the IAM sync tests: plain rules for the generator, moto for AWS.

Personas: ``web_main_claims`` (the web team's protected main-branch push job) may assume
``deploy-web``; ``feature_mr_claims`` (a fork's merge-request job on an unprotected branch) may not.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mappings.iam import aws_iam
from mappings.matching import Rule
from mappings.policies import IssuerInfo, PolicyInput
from tests.rules import flat_rule
from tests.services import free_port, stop_process, wait_for_port

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ROLEGATE = "https://rolegate.example.com"
ACCOUNT_ID = "123456789012"
GITLAB = IssuerInfo(name="gitlab-com", url="https://gitlab.com", audiences=("https://rolegate.example.com",))


def make_rule(name: str = "web-main", **overrides) -> Rule:
    fields = {
        "id": abs(hash(name)) % 10_000,
        "name": name,
        "issuer": "gitlab-com",
        "role_arn": f"arn:aws:iam::{ACCOUNT_ID}:role/deploy-web",
        "role_name": "deploy-web",
        "account_name": "prod",
        "account_id": ACCOUNT_ID,
        "account_mode": "brokered",
        "account_audience": "sts.amazonaws.com",
        "max_session_seconds": 3600,
        "session_tags": True,
        "project": "platform/web",
        "ref": "main",
        "ref_type": "branch",
        "protected": False,
        "environment": None,
        "pipeline_sources": (),
        "expires_at": None,
        "enabled": True,
    }
    fields.update(overrides)
    return flat_rule(**fields)


def make_input(rules, *, mode="brokered", session_tags=True, limit=2048, issuers=(GITLAB,)) -> PolicyInput:
    return PolicyInput(
        account_id=ACCOUNT_ID,
        mode=mode,
        audience="sts.amazonaws.com",
        trust_policy_limit=limit,
        session_tags=session_tags,
        rolegate_issuer=ROLEGATE,
        issuers=tuple(issuers),
        rules=tuple(rules),
        now=NOW,
    )


@pytest.fixture
def aws_env(monkeypatch):
    """Fake credentials and a region, and fresh clients, so nothing can reach real AWS."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_IAM", "AWS_ENDPOINT_URL_STS", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    aws_iam.reset_clients()
    yield os.environ
    aws_iam.reset_clients()


@pytest.fixture
def moto_aws(aws_env):
    from moto import mock_aws

    with mock_aws():
        aws_iam.reset_clients()
        yield
    aws_iam.reset_clients()


@pytest.fixture
def moto_server(aws_env, monkeypatch):
    """A moto server on 127.0.0.1:<free port>, stopped at the end; boto3 points at it."""
    port = free_port()
    moto = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port("127.0.0.1", port, process=process, what="moto_server")
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        aws_iam.reset_clients()
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)
        aws_iam.reset_clients()
