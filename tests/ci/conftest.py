"""A live Rolegate for CI-job tests: gunicorn with production settings, a stand-in GitLab, moto
as STS/IAM/S3 (one of each per xdist worker), the admin's snippets for every mapping, and a
runner machine whose own AWS identity a job must never use."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from tests.ci.jobs import Runner
from tests.contract.conftest import USERS, Live, server_env
from tests.exchange.gitlab_stand_in import GitLabKey, StandInGitLab
from tests.exchange.servers import RolegateServer
from tests.services import free_port, port_open

AUDIENCE = "https://rolegate.example.com"
PROD = "111111111111"
LEGACY = "222222222222"
COMPONENT = "$CI_SERVER_FQDN/platform/rolegate/aws@1.0.0"

CONFIG = """\
issuers:
  - name: gitlab-ci
    url: {issuer_url}
    audiences: [{audience}]
accounts:
  - name: prod
    account_id: "{prod}"
    mode: brokered
    audience: sts.amazonaws.com
  - name: legacy
    account_id: "{legacy}"
    mode: direct
roles:
  - account: prod
    name: deploy-web
    max_session_seconds: 3600
  - account: prod
    name: long-jobs
    max_session_seconds: 10800
  - account: prod
    name: review-apps
    max_session_seconds: 3600
  - account: legacy
    name: deploy-old
mappings:
  - name: web-main-deploy
    issuer: gitlab-ci
    role: prod/deploy-web
    project: platform/web
    ref: main
    ref_type: branch
    protected: true
  - name: web-long-jobs
    issuer: gitlab-ci
    role: prod/long-jobs
    project: platform/web
  - name: web-review-apps
    issuer: gitlab-ci
    role: prod/review-apps
    project: platform/web
    environment: review/*
  - name: legacy-web
    issuer: gitlab-ci
    role: legacy/deploy-old
    project: platform/web
"""

# The admin page's snippets for every mapping, as the server itself renders them.
SNIPPETS = """
import dataclasses, json
from console.snippets import mapping_snippets
from mappings.models import Mapping
print(json.dumps({m.name: dataclasses.asdict(mapping_snippets(m)) for m in Mapping.objects.all()}))
"""


@dataclasses.dataclass
class CiLive(Live):
    snippets: dict = dataclasses.field(default_factory=dict)
    moto_url: str = ""

    def audit(self, **filters) -> list[dict]:
        response = self.api("GET", "/api/v1/audit-events/", self.staff_token, params=filters)
        assert response.status_code == 200, response.text
        return response.json()["results"]


@pytest.fixture(scope="session")
def ci_moto_url():
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        # No MOTO_ACCOUNT_ID: each request's account follows its access key, so an assumed role's
        # credentials act in that role's account (prod or legacy) and the runner's in moto's default.
        env={k: v for k, v in os.environ.items() if k != "MOTO_ACCOUNT_ID"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("moto_server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def ci_live(tmp_path_factory, ci_moto_url):
    gitlab = StandInGitLab(GitLabKey())
    tmp = tmp_path_factory.mktemp("ci-live")
    port = free_port()
    env = {**server_env(tmp, port=port, moto_url=ci_moto_url), "ROLEGATE_CI_COMPONENT": COMPONENT}
    live = CiLive(url=f"http://127.0.0.1:{port}", env=env, gitlab=gitlab, staff_token="", plain_token="")
    live.moto_url = ci_moto_url
    config = tmp / "rolegate.yaml"
    config.write_text(CONFIG.format(issuer_url=gitlab.url, audience=AUDIENCE, prod=PROD, legacy=LEGACY))
    # One Django start for all of it (the machine is shared): migrate, apply, users, snippets.
    setup = (
        "from django.core.management import call_command\n"
        "call_command('migrate', interactive=False, verbosity=0)\n"
        f"call_command('apply', {str(config)!r}, verbosity=0)\n"
    )
    done = live.manage("shell", "-c", setup + USERS + SNIPPETS)
    assert done.returncode == 0, done.stderr
    *_, tokens, snippets = done.stdout.splitlines()
    live.staff_token, live.plain_token = tokens.split()
    live.snippets = json.loads(snippets)
    live.log = tmp / "server.log"
    server = RolegateServer(port=port, env=env, threads=4, log=live.log)
    try:
        server.wait_ready()
        yield live
    finally:
        server.stop()
        gitlab.stop()


@pytest.fixture(scope="session")
def runner_identity(ci_moto_url) -> tuple[str, str]:
    """An IAM user ``runner`` in moto: the runner machine's own AWS identity."""
    iam = boto3.client(
        "iam", endpoint_url=ci_moto_url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    iam.create_user(UserName="runner")
    key = iam.create_access_key(UserName="runner")["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


@pytest.fixture
def runner(tmp_path, ci_moto_url, runner_identity):
    machine = Runner(tmp_path / "runner", ci_moto_url, *runner_identity)
    yield machine
    machine.stop()
    shutil.rmtree(tmp_path / "runner", ignore_errors=True)
