"""A live Rolegate for the contract tests (the promises of docs/): black-box, over HTTP and subprocesses.

One per test session (per xdist worker): a stand-in GitLab, a moto server standing in for STS and
IAM, and ``gunicorn portal.wsgi`` with the *production* settings (no ``DJANGO_DEBUG``, a secret,
``ROLEGATE_ALLOW_HTTP=1``) on a SQLite file of its own, configured with ``manage.py apply`` and
driven with ``requests`` and ``manage.py`` processes only (forked from a warm interpreter, see
tests/command_runner.py; the test process itself never touches the server's database).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests import command_runner
from tests.exchange.gitlab_stand_in import GitLabKey, StandInGitLab
from tests.exchange.servers import ROOT, RolegateServer
from tests.services import free_port, port_open

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ISSUER_NAME = "gitlab-live"
AUDIENCE = "https://rolegate.example.com"
PROD = "111111111111"
LEGACY = "222222222222"
DEPLOY_WEB = f"arn:aws:iam::{PROD}:role/deploy-web"
READONLY = f"arn:aws:iam::{PROD}:role/readonly"
LEGACY_DEPLOY = f"arn:aws:iam::{LEGACY}:role/deploy-old"

CONFIG = """\
issuers:
  - name: {issuer_name}
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
    session_tags: true
  - account: prod
    name: readonly
    max_session_seconds: 7200
    session_tags: false
  - account: legacy
    name: deploy-old
mappings:
  - name: web-main-deploy
    issuer: {issuer_name}
    role: prod/deploy-web
    project: platform/web
    ref: main
    ref_type: branch
    protected: true
  - name: platform-readonly
    issuer: {issuer_name}
    role: prod/readonly
    project: platform/*
  - name: long-names-readonly
    issuer: {issuer_name}
    role: prod/readonly
    project: long/*
  - name: legacy-web
    issuer: {issuer_name}
    role: legacy/deploy-old
    project: platform/web
"""

# A staff user ("the platform lead", who may view the audit log and the mappings, as the platform
# API requires) and a non-staff one ("a developer"), with an API token each.
USERS = """
from django.contrib.auth.models import Permission, User
from console.services import api_token_create
lead = User.objects.create_user("lead", is_staff=True)
lead.user_permissions.set(Permission.objects.filter(codename__in=["view_auditevent", "view_mapping"]))
dev = User.objects.create_user("dev")
print(api_token_create(user=lead, name="contract tests")[1], api_token_create(user=dev, name="contract tests")[1])
"""

# The live server refreshes a GitLab issuer's keys at most every this many seconds (30 in
# production), so the key-rotation test waits seconds, not half a minute.
JWKS_REFRESH_SECONDS = 2

_SCRUBBED = ("DJANGO_", "ROLEGATE_", "DATABASE_URL", "CELERY_BROKER_URL", "AWS_")


@dataclass
class Live:
    url: str
    env: dict[str, str]
    gitlab: StandInGitLab
    staff_token: str
    plain_token: str
    log: Path | None = None  # the server's standard error (its log)
    empty_database: Path | None = None  # a migrated, empty SQLite file to copy

    def manage(self, *args: str, input: str | None = None, env: dict[str, str] | None = None, fresh: bool = False):
        """``python manage.py ARGS`` in a process of its own with the server's environment: forked
        from a warm interpreter (tests/command_runner.py), or a new one with ``fresh=True``."""
        return command_runner.manage(*args, env={**self.env, **(env or {})}, cwd=ROOT, input=input, fresh=fresh)

    def token(self, claims: dict, **overrides) -> str:
        return self.gitlab.mint(self.gitlab.claims(claims, **overrides))

    def exchange(self, path: str, token: str, audience: str | None = None, **extra) -> requests.Response:
        data = {"grant_type": GRANT, "subject_token": token, "subject_token_type": JWT_TYPE, **extra}
        if audience is not None:
            data["audience"] = audience
        return requests.post(f"{self.url}{path}", data=data, timeout=20)

    def api(self, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=20, **kwargs)


def server_env(tmp: Path, *, port: int, moto_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED)}
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DJANGO_SECRET_KEY="contract-tests-secret-0123456789abcdefghijklmnopqrstuvwxyz",
        ROLEGATE_ALLOW_HTTP="1",
        ROLEGATE_ISSUER_ALLOWED_NETWORKS="127.0.0.0/8",  # the stand-in GitLab listens on loopback
        ROLEGATE_ISSUER=f"http://127.0.0.1:{port}",
        ROLEGATE_RATE_LIMIT="0",
        ROLEGATE_JWKS_MIN_REFRESH_SECONDS=str(JWKS_REFRESH_SECONDS),
        DATABASE_URL=f"sqlite:///{tmp / 'rolegate.sqlite3'}",
        AWS_ENDPOINT_URL=moto_url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    return env


@pytest.fixture(scope="session")
def moto_url():
    port = free_port()
    moto = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "MOTO_ACCOUNT_ID": PROD},  # the prod account's IAM, as its credentials would reach
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
def live(tmp_path_factory, moto_url):
    gitlab = StandInGitLab(GitLabKey())
    tmp = tmp_path_factory.mktemp("contract")
    port = free_port()
    env = server_env(tmp, port=port, moto_url=moto_url)
    config = tmp / "rolegate.yaml"
    config.write_text(
        CONFIG.format(issuer_name=ISSUER_NAME, issuer_url=gitlab.url, audience=AUDIENCE, prod=PROD, legacy=LEGACY)
    )
    live = Live(url=f"http://127.0.0.1:{port}", env=env, gitlab=gitlab, staff_token="", plain_token="")
    live.empty_database = tmp / "empty.sqlite3"
    migrated = live.manage("migrate", "--no-input", "-v", "0", env={"DATABASE_URL": f"sqlite:///{live.empty_database}"})
    assert migrated.returncode == 0, migrated.stderr
    shutil.copy(live.empty_database, tmp / "rolegate.sqlite3")
    done = live.manage("apply", str(config))
    assert done.returncode == 0, done.stderr
    done = live.manage("shell", "-c", USERS)  # `create_api_token` itself is tested in test_commands
    assert done.returncode == 0, done.stderr
    live.staff_token, live.plain_token = done.stdout.splitlines()[-1].split()
    live.log = tmp / "server.log"
    # The server logs the most it ever does (DEBUG): still never a secret.
    server = RolegateServer(port=port, env={**env, "ROLEGATE_LOG_LEVEL": "DEBUG"}, threads=4, log=live.log)
    try:
        server.wait_ready()
        yield live
    finally:
        server.stop()
        gitlab.stop()


def get(live: Live, path: str, **kwargs) -> requests.Response:
    return requests.get(f"{live.url}{path}", timeout=20, **kwargs)
