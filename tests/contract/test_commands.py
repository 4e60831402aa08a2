"""docs/configuration.md and docs/commands.md: the operator commands as subprocesses (exit codes,
stdout, one-line stderr)."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import boto3
import jwt
import pytest
import requests
import yaml

from tests.contract.conftest import CONFIG, DEPLOY_WEB, PROD, READONLY, get
from tests.docs_reference import documented_reasons

BROKEN = """\
issuers:
  - name: gitlab-x
    url: https://gitlab.example.com
    audiences: [https://rolegate.example.com]
accounts:
  - name: prod
    account_id: "12345"
    mode: brokered
roles:
  - account: prod
    name: deploy-web
mappings:
  - name: a
    issuer: gitlab-x
    role: prod/deploy-web
    project: platform/web
  - name: b
    issuer: gitlab-x
    role: prod/deploy-web
    project: platform/web
    ref_type: sometimes
"""


def one_line_reason(done) -> str:
    """A failed command: non-zero, and its reason is one line (the last) of standard error."""
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert lines, "no reason on standard error"
    assert lines[-1].startswith("CommandError: "), done.stderr
    return lines[-1]


@pytest.fixture
def fresh(live, tmp_path):
    """The live server's environment on a database of its own, for commands that rewrite it."""
    shutil.copy(live.empty_database, tmp_path / "fresh.sqlite3")
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}"}

    def manage(*args: str, input: str | None = None):
        return live.manage(*args, input=input, env=env)

    return manage


def config_text(live) -> str:
    return CONFIG.format(
        issuer_name="gitlab-live", issuer_url=live.gitlab.url, audience="https://a.example", prod=PROD, legacy="2" * 12
    )


def test_apply_plans_dry_runs_prunes_and_round_trips_with_export(live, fresh, tmp_path):
    path = tmp_path / "rolegate.yaml"
    path.write_text(config_text(live))

    dry = fresh("apply", str(path), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "create mapping web-main-deploy" in dry.stdout.replace("'", "")
    assert dry.stdout.strip().splitlines()[-1] == "Dry run: nothing was changed."

    done = fresh("apply", str(path))
    assert done.returncode == 0, done.stderr
    # Everything is still to create: the dry run changed nothing.
    assert "Plan: 10 to create, 0 to update, 0 to delete, 0 unchanged." in done.stdout

    exported = fresh("export")
    assert exported.returncode == 0
    assert yaml.safe_load(exported.stdout)["mappings"]
    again = fresh("apply", "-", input=exported.stdout)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("No changes.")

    document = yaml.safe_load(exported.stdout)
    document["mappings"] = [m for m in document["mappings"] if m["name"] != "legacy-web"]
    path.write_text(yaml.safe_dump(document))
    kept = fresh("apply", str(path))
    assert "1 not in the file kept (--prune deletes them)" in kept.stdout
    pruned = fresh("apply", str(path), "--prune")
    assert pruned.returncode == 0, pruned.stderr
    assert "delete mapping" in pruned.stdout and "legacy-web" in pruned.stdout
    assert "legacy-web" not in fresh("export").stdout


def test_an_invalid_file_changes_nothing_and_names_every_error_by_path(live, fresh, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    done = fresh("apply", str(path))
    reason = one_line_reason(done)
    assert "nothing was changed" in reason
    assert "accounts[0].account_id" in done.stderr and "mappings[1].ref_type" in done.stderr
    assert "gitlab-x" not in fresh("export").stdout


@pytest.mark.parametrize(
    "args",
    [
        ("apply", "/no/such/file.yaml"),
        ("audit_export", "--since", "last tuesday"),
        ("sync_iam", "--account", "nope"),
        ("create_api_token", "nobody"),
    ],
)
def test_failing_commands_exit_non_zero_with_a_one_line_reason(live, args):
    done = live.manage(*args)
    one_line_reason(done)
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize("args", [("apply", "/no/such/file.yaml"), ("export",), ("sync_iam", "--check")])
def test_a_forked_command_answers_as_a_new_interpreter_does(live, args):
    """The other tests' commands are forked from a warm interpreter (tests/command_runner.py):
    the same exit code, output and error as ``python manage.py`` in a new one."""
    fresh = live.manage(*args, fresh=True)
    forked = live.manage(*args)
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)


def test_create_api_token_prints_the_token_alone_on_its_last_line(live):
    done = live.manage("create_api_token", "lead")
    assert done.returncode == 0
    token = done.stdout.strip().splitlines()[-1]
    assert " " not in token and len(token) >= 32
    assert live.api("GET", "/api/v1/audit-events/?page_size=1", token).status_code == 200


def test_audit_export_oldest_first_with_the_contract_field_names(live, web_main_claims):
    response = live.exchange("/api/v1/token", live.token(web_main_claims), DEPLOY_WEB)
    request_id = response.headers["X-Request-ID"]
    done = live.manage("audit_export")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    times = [e["time"] for e in events]
    assert times == sorted(times)
    (event,) = [e for e in events if e["request_id"] == request_id]
    assert (event["outcome"], event["reason"], event["role_arn"]) == ("granted", "granted", DEPLOY_WEB)
    api_event = live.api("GET", f"/api/v1/audit-events/?request_id={request_id}", live.staff_token).json()
    assert api_event["results"] == [event]  # one shape in exports and the API

    since = live.manage("audit_export", "--since", event["time"], "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(since.stdout)))
    assert rows[0]["request_id"] == request_id
    assert set(event) == set(rows[0])
    assert response.json()["access_token"] not in done.stdout + since.stdout


def test_sync_iam_prints_a_line_per_provider_and_role_then_a_summary(live):
    iam = boto3.client(
        "iam",
        endpoint_url=live.env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    for name in ("deploy-web", "readonly"):
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    done = live.manage("sync_iam", "--account", "prod")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[:-1] == [
        f"provider prod/{live.url.removeprefix('http://')}: created",
        "role prod/deploy-web: updated",
        "role prod/readonly: updated",
    ]
    assert lines[-1] == "synced 3: 1 created, 2 updated"
    assert done.stderr == ""
    check = live.manage("sync_iam", "--account", "prod", "--check")
    assert check.returncode == 0, check.stdout + check.stderr

    failing = live.manage("sync_iam", "--account", "legacy")  # its IAM role does not exist
    assert "role legacy/deploy-old: failed: NoSuchEntity" in failing.stdout
    one_line_reason(failing)
    assert len(failing.stderr.strip().splitlines()) == 1, failing.stderr


def test_rotate_signing_key_publishes_the_next_key_and_keeps_signing_with_the_current(live, web_main_claims):
    before = {k["kid"] for k in get(live, "/.well-known/jwks.json").json()["keys"]}
    done = live.manage("rotate_signing_key")
    assert done.returncode == 0, done.stderr
    after = {k["kid"] for k in get(live, "/.well-known/jwks.json").json()["keys"]}
    assert before < after
    token = live.exchange("/api/v1/token", live.token(web_main_claims), DEPLOY_WEB).json()["access_token"]
    assert jwt.get_unverified_header(token)["kid"] in after
    assert requests.get(f"{live.url}/healthz", timeout=10).status_code == 200


def test_no_raw_token_or_credential_is_stored_logged_or_exported(live, web_main_claims):
    subject = live.token(web_main_claims)
    minted = live.exchange("/api/v1/token", subject, DEPLOY_WEB).json()["access_token"]
    credentials = live.exchange("/api/v1/credentials", subject, READONLY).json()
    assert credentials.keys() >= {"SecretAccessKey", "SessionToken"}
    denied = live.token(web_main_claims, aud="https://elsewhere.example")
    assert live.exchange("/api/v1/token", denied, DEPLOY_WEB).status_code == 400

    exports = live.manage("audit_export").stdout + live.manage("audit_export", "--format", "csv").stdout
    api = live.api("GET", "/api/v1/audit-events/?page_size=1000", live.staff_token).text
    database = (Path(live.env["DATABASE_URL"].removeprefix("sqlite:///"))).read_bytes().decode("latin-1")
    log = live.log.read_text(errors="replace")
    secrets = [subject, denied, minted, credentials["SecretAccessKey"], credentials["SessionToken"]]
    secrets += [value.split(".")[2] for value in (subject, denied, minted)]  # signatures alone
    for where, text in (("exports", exports), ("api", api), ("database", database), ("server log", log)):
        for secret in secrets:
            assert secret not in text, where


def test_every_audited_reason_is_a_documented_code(live, web_main_claims):
    documented = set(documented_reasons())
    promised = {"granted", "invalid_request", "token_expired", "bad_signature", "no_matching_mapping", "replay"}
    assert promised <= documented
    # An exchange of its own: run alone, or on a test worker whose server saw no other, the audit
    # would otherwise be empty.
    live.exchange("/api/v1/token", live.token(web_main_claims), DEPLOY_WEB)
    reasons = {json.loads(line)["reason"] for line in live.manage("audit_export").stdout.splitlines()}
    assert reasons and reasons <= documented, reasons - documented
