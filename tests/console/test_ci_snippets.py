"""CI snippets for a mapping, and the credential_process helper Rolegate serves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from django.contrib import admin
from django.template import Context, Template

from console.snippets import mapping_snippets
from console.views import CREDENTIAL_PROCESS_SCRIPT
from tests.factories import IssuerFactory, web_main_deploy
from tests.services import free_port

ARN = "arn:aws:iam::123456789012:role/deploy-web"


@pytest.fixture
def mapping(db):
    issuer = IssuerFactory(audiences=["https://rolegate.example.com", "second"])
    return web_main_deploy(issuer=issuer, environment="production")


@pytest.mark.parametrize("variant", ["credentials_job", "sts_job"])
def test_jobs_are_valid_gitlab_ci_yaml_with_the_issuers_first_audience(mapping, variant):
    text = getattr(mapping_snippets(mapping, rolegate_url="https://rolegate.example.com"), variant)
    job = yaml.safe_load(text)["assume-deploy-web"]
    assert job["id_tokens"] == {"ROLEGATE_ID_TOKEN": {"aud": "https://rolegate.example.com"}}
    assert job["environment"] == "production"
    script = " ".join(job["script"])
    assert ARN in script
    assert "${ROLEGATE_ID_TOKEN}" in script
    assert "urn:ietf:params:oauth:grant-type:token-exchange" in script
    assert "# Rolegate mapping 'web-main-deploy'" in text


def test_credentials_job_posts_to_credentials_and_sts_job_to_token(mapping):
    snippets = mapping_snippets(mapping, rolegate_url="https://rolegate.example.com/")
    assert "https://rolegate.example.com/api/v1/credentials" in snippets.credentials_job
    assert "credential_process = cat" in snippets.credentials_job
    assert "CI_PROJECT_DIR" not in snippets.credentials_job  # credentials never inside the project (artifacts)
    assert "https://rolegate.example.com/api/v1/token" in snippets.sts_job
    assert "aws sts assume-role-with-web-identity" in snippets.sts_job
    assert '--role-session-name "gl-${CI_PROJECT_ID}-${CI_JOB_ID}"' in snippets.sts_job
    assert "https://rolegate.example.com/cli/rolegate-credential-process.py" in snippets.aws_config
    assert f"--role-arn {ARN}" in snippets.aws_config


def test_template_tag_renders_escaped_snippets(mapping):
    html = Template("{% load console_snippets %}{% rolegate_ci_snippets m %}").render(Context({"m": mapping}))
    assert 'id="snippet-credentials"' in html and 'id="snippet-sts"' in html
    assert "aud: &quot;https://rolegate.example.com&quot;" in html


def test_snippets_of_a_mapping_that_grants_nothing_say_so(mapping):
    render = Template("{% load console_snippets %}{% rolegate_ci_snippets m %}").render
    assert "grants nothing" not in render(Context({"m": mapping}))
    mapping.enabled = False
    assert "This mapping is disabled: it grants nothing" in render(Context({"m": mapping}))


def test_mapping_change_page_shows_the_snippets(client, staff, mapping):
    if not admin.site.is_registered(type(mapping)):
        pytest.skip("the registry admin (mappings/admin.py) is not on this branch yet")
    client.force_login(staff)
    page = client.get(f"/admin/mappings/mapping/{mapping.pk}/change/").content.decode()
    assert 'id="rolegate-ci-snippets"' in page and "/api/v1/credentials" in page


def test_script_is_served(client, db):
    response = client.get("/cli/rolegate-credential-process.py")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/x-python")
    assert response.content == CREDENTIAL_PROCESS_SCRIPT.read_bytes()
    assert client.post("/cli/rolegate-credential-process.py").status_code == 405


def test_script_uses_only_the_standard_library():
    source = CREDENTIAL_PROCESS_SCRIPT.read_text()
    imports = {line.split()[1].split(".")[0] for line in source.splitlines() if line.startswith(("import ", "from "))}
    assert imports <= set(sys.stdlib_module_names)


class _Stub:
    """A local stand-in for Rolegate's /api/v1/credentials, on 127.0.0.1 and a free port."""

    def __init__(self, status: int, body: dict, *, bodies: dict[str, dict] | None = None):
        self.requests: list[tuple[str, dict]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                stub.requests.append((self.path, {k: v[0] for k, v in form.items()}))
                payload = json.dumps((bodies or {}).get(self.path, body)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def _run(url: str, token: str | None = "gitlab.id.token", *extra: str):
    env = {"PATH": os.environ.get("PATH", "")}
    if token is not None:
        env["ROLEGATE_ID_TOKEN"] = token
    return subprocess.run(
        [sys.executable, str(CREDENTIAL_PROCESS_SCRIPT), "--url", url, "--role-arn", ARN, *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


CREDENTIALS = {
    "Version": 1,
    "AccessKeyId": "ASIAEXAMPLE",
    "SecretAccessKey": "secret",
    "SessionToken": "session",
    "Expiration": "2026-11-26T13:00:00Z",
}


def test_script_prints_credential_process_json():
    with _Stub(200, CREDENTIALS) as stub:
        result = _run(stub.url + "/", "gitlab.id.token", "--duration-seconds", "900")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == CREDENTIALS
    [(path, form)] = stub.requests
    assert path == "/api/v1/credentials"
    assert form == {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": "gitlab.id.token",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "audience": ARN,
        "duration_seconds": "900",
    }


def test_script_reports_a_refusal_on_one_line_without_the_token():
    refusal = {"error": "invalid_target", "error_description": "No mapping grants it.", "request_id": "r1"}
    with _Stub(400, refusal) as stub:
        result = _run(stub.url)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "invalid_target: No mapping grants it. (request r1)" in result.stderr
    assert "gitlab.id.token" not in result.stderr


def test_script_without_a_token_or_server_fails_clearly():
    assert "ROLEGATE_ID_TOKEN is empty" in _run("http://127.0.0.1:1", token=None).stderr
    result = _run(f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1 and "cannot reach Rolegate" in result.stderr


def _script(job_yaml: str) -> str:
    job = yaml.safe_load(job_yaml)["assume-deploy-web"]
    return "\n".join(job["script"])


FAKE_AWS = """#!/bin/sh
# A stand-in for the AWS CLI: records its arguments, answers like STS.
echo "$@" >> "$HOME/aws-calls"
case "$2" in
  assume-role-with-web-identity) printf 'ASIASTS\\tsts-secret\\tsts-session\\n' ;;
  get-caller-identity) echo "identity key=${AWS_ACCESS_KEY_ID:-from-config}" ;;
esac
"""


def _run_job(script: str, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(FAKE_AWS)
    (bin_dir / "aws").chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "ROLEGATE_ID_TOKEN": "gitlab.id.token",
        "CI_PROJECT_ID": "20",
        "CI_JOB_ID": "302",
    }
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True, text=True, timeout=30
    )
    return result, home


def test_credentials_job_script_runs_against_rolegate(mapping, tmp_path):
    """The job's script lines, run by bash with real curl against a stand-in Rolegate."""
    with _Stub(200, CREDENTIALS) as stub:
        snippets = mapping_snippets(mapping, rolegate_url=stub.url)
        result, home = _run_job(_script(snippets.credentials_job), tmp_path)
    assert result.returncode == 0, result.stderr
    [(path, form)] = stub.requests
    assert path == "/api/v1/credentials"
    assert form["subject_token"] == "gitlab.id.token" and form["audience"] == ARN
    assert json.loads((home / ".aws" / "rolegate-credentials.json").read_text()) == CREDENTIALS
    config = (home / ".aws" / "config").read_text()
    assert config == f"[default]\ncredential_process = cat {home}/.aws/rolegate-credentials.json\n"


def test_sts_job_script_passes_rolegates_token_to_sts(mapping, tmp_path):
    with _Stub(200, {}, bodies={"/api/v1/token": {"access_token": "minted.jwt", "token_type": "N_A"}}) as stub:
        snippets = mapping_snippets(mapping, rolegate_url=stub.url)
        result, home = _run_job(_script(snippets.sts_job), tmp_path)
    assert result.returncode == 0, result.stderr
    assert [path for path, _ in stub.requests] == ["/api/v1/token"]
    calls = (home / "aws-calls").read_text().splitlines()
    assert f"--role-arn {ARN}" in calls[0]
    assert "--role-session-name gl-20-302" in calls[0]
    assert "--web-identity-token minted.jwt" in calls[0]
    assert "identity key=ASIASTS" in result.stdout
