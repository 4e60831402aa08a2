"""The rename scenario of docs/trust-model.md#identity-pins against a live server: project 20 at
``platform/web`` is granted and pinned; after the path is re-created (project 99 at
``platform/web``) the token is refused ``identity_changed`` naming both ids; once a platform
engineer accepts the change with ``manage.py accept_identity_change`` (recorded), it is granted,
and the old project is refused.

A server of its own (gunicorn, production settings, its own SQLite file), configured with
``apply`` and with the registry default ``ROLEGATE_PIN_IDENTITY=1``: pins are state that would
leak into the other contract tests' shared server."""

from __future__ import annotations

import shutil

import jwt
import pytest
import yaml

from tests.contract.conftest import (
    AUDIENCE,
    CONFIG,
    DEPLOY_WEB,
    ISSUER_NAME,
    LEGACY,
    PROD,
    Live,
    server_env,
)
from tests.exchange.gitlab_stand_in import GitLabKey, StandInGitLab
from tests.exchange.servers import RolegateServer
from tests.services import free_port


@pytest.fixture(scope="module")
def pinning(tmp_path_factory, live, moto_url):
    """A second live Rolegate: the contract configuration, every mapping pinning by default."""
    gitlab = StandInGitLab(GitLabKey())
    tmp = tmp_path_factory.mktemp("pins")
    port = free_port()
    env = {**server_env(tmp, port=port, moto_url=moto_url), "ROLEGATE_PIN_IDENTITY": "1"}
    server_live = Live(url=f"http://127.0.0.1:{port}", env=env, gitlab=gitlab, staff_token="", plain_token="")
    shutil.copy(live.empty_database, tmp / "rolegate.sqlite3")  # migrated, empty
    config = tmp / "rolegate.yaml"
    config.write_text(
        CONFIG.format(issuer_name=ISSUER_NAME, issuer_url=gitlab.url, audience=AUDIENCE, prod=PROD, legacy=LEGACY)
    )
    done = server_live.manage("apply", str(config))
    assert done.returncode == 0, done.stderr
    server = RolegateServer(port=port, env=env, threads=2, log=tmp / "server.log")
    try:
        server.wait_ready()
        yield server_live
    finally:
        server.stop()
        gitlab.stop()


def test_a_re_created_path_is_refused_until_the_change_is_accepted(pinning, web_main_claims):
    granted = pinning.exchange("/api/v1/token", pinning.token(web_main_claims), DEPLOY_WEB)
    assert granted.status_code == 200, granted.text
    assert jwt.decode(granted.json()["access_token"], options={"verify_signature": False})["project_id"] == "20"

    exported = yaml.safe_load(pinning.manage("export").stdout)
    assert [(p["kind"], p["path"], p["id"]) for p in exported["pins"]] == [
        ("namespace", "platform", "72"),
        ("project", "platform/web", "20"),
    ]
    assert all(p["pinned_by"] == "first granted through mapping web-main-deploy" for p in exported["pins"])

    renamed = pinning.token(web_main_claims, project_id="99")
    refused = pinning.exchange("/api/v1/token", renamed, DEPLOY_WEB)
    assert refused.status_code == 400
    body = refused.json()
    assert body["error"] == "invalid_target"
    assert "project 'platform/web' is pinned to project_id 20 since " in body["error_description"]
    assert "this token has project_id 99" in body["error_description"]
    events = pinning.manage("audit_export").stdout.splitlines()
    assert '"reason":"identity_changed"' in events[-1] and f'"request_id":"{body["request_id"]}"' in events[-1]

    accepted = pinning.manage(
        "accept_identity_change", "platform/web", "99", "--note", "platform/web was deleted and re-created"
    )
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.startswith("project platform/web of issuer gitlab-live: pinned to 99 (was 20); ")
    recorded = pinning.manage(
        "shell",
        "-c",
        "from mappings.models import IdentityChange as C; "
        "print(*C.objects.values_list('path', 'old_id', 'new_id', 'note').get(), sep='|')",
    )
    assert recorded.stdout.splitlines()[-1] == "platform/web|20|99|platform/web was deleted and re-created"

    again = pinning.exchange("/api/v1/token", pinning.token(web_main_claims, project_id="99"), DEPLOY_WEB)
    assert again.status_code == 200, again.text
    old = pinning.exchange("/api/v1/token", pinning.token(web_main_claims), DEPLOY_WEB)
    assert old.status_code == 400 and "pinned to project_id 99" in old.json()["error_description"]
