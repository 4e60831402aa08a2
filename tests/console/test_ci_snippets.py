"""CI snippets for a mapping, the GitLab CI/CD component, and the credential_process helper Rolegate
serves (its unit behaviour; tests/ci runs all of them as jobs against a live Rolegate)."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
import yaml
from django.contrib import admin
from django.template import Context, Template
from hypothesis import given
from hypothesis import strategies as st

from console.snippets import example_environment, mapping_snippets
from console.views import CREDENTIAL_PROCESS_SCRIPT
from mappings.models import Account
from mappings.patterns import matches
from tests.exchange.servers import ROOT
from tests.factories import IssuerFactory, web_main_deploy
from tests.services import free_port

ARN = "arn:aws:iam::123456789012:role/deploy-web"
COMPONENT = ROOT / "templates" / "aws.yml"
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")


def _helper():
    spec = importlib.util.spec_from_file_location("rolegate_credential_process", CREDENTIAL_PROCESS_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


helper = _helper()


@pytest.fixture
def mapping(db):
    issuer = IssuerFactory(audiences=["https://rolegate.example.com", "second"])
    return web_main_deploy(issuer=issuer, environment="production")


def _job(text: str) -> dict:
    config = yaml.safe_load(text)
    [name] = [key for key in config if key != "include"]
    return config[name]


@pytest.mark.parametrize("variant", ["credentials_job", "sts_job"])
def test_jobs_ask_for_the_issuers_first_audience_and_the_mappings_environment(mapping, variant):
    text = getattr(mapping_snippets(mapping, rolegate_url="https://rolegate.example.com"), variant)
    job = _job(text)
    assert job["id_tokens"] == {"ROLEGATE_ID_TOKEN": {"aud": "https://rolegate.example.com"}}
    assert job["environment"] == "production"
    script = "\n".join(job["script"])
    assert ARN in script
    assert '"$ROLEGATE_ID_TOKEN" | curl' in script and "subject_token@-" in script  # never on a command line
    assert "--fail" not in script  # curl's exit status would hide Rolegate's answer
    assert "export $(" not in script
    assert "# Rolegate mapping 'web-main-deploy'" in text


def test_the_component_job_includes_the_component_with_the_mappings_values(mapping, settings):
    settings.ROLEGATE_CI_COMPONENT = "gitlab.example.com/platform/rolegate/aws@2.1.0"
    snippets = mapping_snippets(mapping, rolegate_url="https://rolegate.example.com/")
    config = yaml.safe_load(snippets.component_job)
    assert config["include"] == [
        {
            "component": "gitlab.example.com/platform/rolegate/aws@2.1.0",
            "inputs": {
                "rolegate_url": "https://rolegate.example.com",
                "role_arn": ARN,
                "audience": "https://rolegate.example.com",
                "max_session_seconds": mapping.role.max_session_seconds,
            },
        }
    ]
    assert config["assume-deploy-web"]["extends"] == ".rolegate-aws"
    assert config["assume-deploy-web"]["environment"] == "production"
    # Every input it passes is one the component declares.
    spec = yaml.safe_load(COMPONENT.read_text().split("\n---\n")[0])["spec"]
    assert set(config["include"][0]["inputs"]) <= set(spec["inputs"])


def test_every_flow_takes_away_ambient_credentials_first(mapping):
    snippets = mapping_snippets(mapping)
    body = COMPONENT.read_text().split("\n---\n")[1]
    [hidden_job] = yaml.safe_load(body).values()
    component_setup = "\n".join(hidden_job["before_script"])
    for script in (snippets.credentials_job, snippets.sts_job, component_setup):
        for needed in ("unset AWS_ACCESS_KEY_ID", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_PROFILE"):
            assert needed in script
        assert "export AWS_EC2_METADATA_DISABLED=true" in script
        assert 'export AWS_CONFIG_FILE="$ROLEGATE_DIR/config" AWS_SHARED_CREDENTIALS_FILE=' in script
        assert "CI_PROJECT_DIR" not in script


def test_a_direct_mode_mapping_gets_only_the_direct_flow(mapping):
    account = mapping.role.account
    account.mode = Account.Mode.DIRECT
    account.save()
    snippets = mapping_snippets(mapping, rolegate_url="https://rolegate.example.com")
    assert snippets.direct
    assert snippets.component_job is snippets.credentials_job is snippets.sts_job is snippets.aws_config is None
    job = _job(snippets.direct_job)
    assert job["id_tokens"] == {"AWS_ID_TOKEN": {"aud": "https://rolegate.example.com"}}
    script = "\n".join(job["script"])
    assert "rolegate.example.com" not in script  # straight to STS
    assert "web_identity_token_file" in script and ARN in script


@pytest.mark.parametrize(("pattern", "example"), [("review/*", "review/example"), ("env-??", "env-xx")])
def test_an_environment_pattern_gets_an_example_and_a_comment(mapping, pattern, example):
    mapping.environment = pattern
    snippets = mapping_snippets(mapping)
    for text in (snippets.component_job, snippets.credentials_job, snippets.sts_job):
        assert _job(text)["environment"] == example
        assert f"# The mapping takes any environment matching {pattern!r}" in text


def test_the_ids_a_mapping_is_bound_to_are_said_in_the_comments(mapping):
    mapping.project, mapping.project_id, mapping.namespace_id = "*", "20", "72"
    for text in (mapping_snippets(mapping).component_job, mapping_snippets(mapping).sts_job):
        assert "#   project *, branch ref main" in text
        assert "#   project id 20 only (CI_PROJECT_ID)" in text
        assert "#   namespace id 72 only (CI_PROJECT_NAMESPACE_ID)" in text


@given(st.text(alphabet="abcXYZ019-_/ *?", min_size=1, max_size=30))
def test_the_example_environment_matches_its_pattern(pattern):
    assert matches(pattern, example_environment(pattern))


def _documents_for_schema(mapping, tmp_path) -> list[Path]:
    files = []
    snippets = mapping_snippets(mapping)
    for name in ("component_job", "credentials_job", "sts_job"):
        files.append(tmp_path / f"{name}.yml")
        files[-1].write_text(getattr(snippets, name))
    mapping.environment = "review/*"
    files.append(tmp_path / "environment-pattern.yml")
    files[-1].write_text(mapping_snippets(mapping).component_job)
    mapping.role.account.mode = Account.Mode.DIRECT
    files.append(tmp_path / "direct_job.yml")
    files[-1].write_text(mapping_snippets(mapping).direct_job)
    # A component is two YAML documents (spec header, then the jobs); the schema takes each.
    head, body = COMPONENT.read_text().split("\n---\n")
    for name, text in (("component-spec.yml", head), ("component-jobs.yml", body)):
        files.append(tmp_path / name)
        files[-1].write_text(text)
    return files


def test_snippets_and_the_component_validate_against_gitlabs_ci_schema(mapping, tmp_path):
    files = _documents_for_schema(mapping, tmp_path)
    result = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.gitlab-ci", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # And the check can fail: a job with an unknown key does not validate.
    (tmp_path / "bad.yml").write_text("job:\n  script: [ls]\n  id_token: {}\n")
    bad = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.gitlab-ci", str(tmp_path / "bad.yml")],
        capture_output=True,
        timeout=60,
    )
    assert bad.returncode == 1


def test_template_tag_renders_escaped_snippets(mapping):
    html = Template("{% load console_snippets %}{% rolegate_ci_snippets m %}").render(Context({"m": mapping}))
    for name in ("component", "credentials", "sts", "aws-config"):
        assert f'id="snippet-{name}"' in html
    assert "aud: &quot;https://rolegate.example.com&quot;" in html
    assert 'id="snippet-direct"' not in html


def test_template_tag_shows_the_direct_flow_for_a_direct_account(mapping):
    mapping.role.account.mode = Account.Mode.DIRECT
    html = Template("{% load console_snippets %}{% rolegate_ci_snippets m %}").render(Context({"m": mapping}))
    assert 'id="snippet-direct"' in html and 'id="snippet-component"' not in html


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


def test_script_uses_only_the_standard_library_of_python_3_8():
    source = CREDENTIAL_PROCESS_SCRIPT.read_text()
    tree = ast.parse(source, feature_version=(3, 8))
    imports = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imports.add(node.module.split(".")[0])
    assert imports <= set(sys.stdlib_module_names)


# --- the helper against a stand-in Rolegate -------------------------------------------------------


class _Stub:
    """A local stand-in for Rolegate's /api/v1/credentials, on 127.0.0.1 and a free port."""

    def __init__(self, status: int, body: dict):
        self.requests: list[tuple[str, dict]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                stub.requests.append((self.path, {k: v[0] for k, v in form.items()}))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Request-ID", "req-1")
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


def _token(lifetime: int = 7200, **claims) -> str:
    payload = {"exp": int(time.time()) + lifetime, "jti": os.urandom(8).hex(), **claims}
    return jwt.encode(payload, "a-key-the-helper-never-sees-or-checks-0123456789", algorithm="HS256")


def _run(url: str, tmp_path, token: str | None, *extra: str, env: dict | None = None):
    environment = {"PATH": os.environ.get("PATH", ""), "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    if token is not None:
        environment["ROLEGATE_ID_TOKEN"] = token
    return subprocess.run(
        [sys.executable, str(CREDENTIAL_PROCESS_SCRIPT), "--url", url, "--role-arn", ARN, *extra],
        env={**environment, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def _credentials(lifetime: int = 3600) -> dict:
    return {
        "Version": 1,
        "AccessKeyId": "ASIAEXAMPLE",
        "SecretAccessKey": "secret",
        "SessionToken": "session",
        "Expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + lifetime)),
    }


def test_helper_prints_credential_process_json_once_per_token_and_role(tmp_path):
    credentials = _credentials()
    token = _token()
    with _Stub(200, credentials) as stub:
        first = _run(stub.url + "/", tmp_path, token, "--max-session-seconds", "10800")
        second = _run(stub.url, tmp_path, token, "--max-session-seconds", "10800")
    for result in (first, second):
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == credentials
    [(path, form)] = stub.requests  # the second came from the cache
    assert path == "/api/v1/credentials"
    assert {k: v for k, v in form.items() if k != "duration_seconds"} == {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "audience": ARN,
    }
    assert 7190 <= int(form["duration_seconds"]) <= 7200  # until the token expires
    assert "AWS session for" in first.stderr and "request_id req-1" in first.stderr
    assert token not in first.stderr + second.stderr


@pytest.mark.parametrize(
    ("lifetime", "extra", "expected"),
    [
        (7200, [], 3600),  # the role's maximum is unknown: IAM's default one hour
        (7200, ["--max-session-seconds", "1800"], 1800),
        (300, [], 900),  # STS's minimum
        (7200, ["--duration-seconds", "1200"], 1200),
    ],
)
def test_helper_asks_for_a_session_covering_the_token_within_bounds(tmp_path, lifetime, extra, expected):
    with _Stub(200, _credentials()) as stub:
        result = _run(stub.url, tmp_path, _token(lifetime), *extra)
    assert result.returncode == 0, result.stderr
    assert abs(int(stub.requests[0][1]["duration_seconds"]) - expected) <= 10


@given(
    lifetime=st.integers(min_value=-10_000, max_value=100_000),
    cap=st.one_of(st.none(), st.integers(min_value=900, max_value=43200)),
)
def test_auto_duration_stays_within_sts_and_the_role(lifetime, cap):
    now = 1_800_000_000.5
    duration = helper.auto_duration(int(now) + lifetime, cap, now)
    top = cap or helper.DEFAULT_MAX_SESSION_SECONDS
    assert 900 <= duration <= top
    if 900 <= lifetime <= top:
        assert abs(duration - lifetime) <= 1


def test_helper_reads_exp_without_verifying_and_survives_garbage():
    assert helper.token_expiry(_token(100)) == pytest.approx(time.time() + 100, abs=5)
    for garbage in ("", "abc", "a.b.c", "a.eyJleHAiOiJ4In0.c", "a.eyJleHAiOnRydWV9.c"):
        assert helper.token_expiry(garbage) is None
    assert helper.auto_duration(None, 3600, time.time()) is None  # then Rolegate's default


def test_helper_reports_a_refusal_on_one_line_with_the_request_id(tmp_path):
    refusal = {"error": "invalid_target", "error_description": "No mapping grants it.", "request_id": "r1"}
    with _Stub(400, refusal) as stub:
        result = _run(stub.url, tmp_path, "gitlab.id.token")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "Rolegate refused: invalid_target: No mapping grants it. (request_id r1)" in result.stderr
    assert "gitlab.id.token" not in result.stderr


def test_helper_explains_a_duration_above_the_roles_maximum(tmp_path):
    refusal = {
        "error": "invalid_target",
        "error_description": "duration_seconds 3600 is more than deploy-web's maximum session of 1800 seconds.",
        "request_id": "r2",
    }
    with _Stub(400, refusal) as stub:
        result = _run(stub.url, tmp_path, _token())
    assert "set --max-session-seconds (the component's max_session_seconds input)" in result.stderr


def test_helper_without_a_token_or_server_fails_clearly(tmp_path):
    assert "ROLEGATE_ID_TOKEN is empty" in _run("http://127.0.0.1:1", tmp_path, None).stderr
    result = _run(f"http://127.0.0.1:{free_port()}", tmp_path, _token())
    assert result.returncode == 1 and "cannot reach Rolegate" in result.stderr


# --- the helper's cache -----------------------------------------------------------------------------


def test_cache_folder_follows_xdg_runtime_dir_then_tmpdir(tmp_path, monkeypatch):
    runtime, tmp = tmp_path / "run", tmp_path / "tmp"
    runtime.mkdir(mode=0o700)
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr("tempfile.tempdir", None)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert helper.cache_dir() == str(runtime / "rolegate")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    folder = helper.cache_dir()
    assert folder == str(tmp / f"rolegate-{os.geteuid()}")
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700


def test_cache_folder_is_never_inside_the_project_directory(tmp_path, monkeypatch):
    project = tmp_path / "builds" / "platform" / "web"
    (project / "tmp").mkdir(parents=True)
    monkeypatch.setenv("CI_PROJECT_DIR", str(project))
    monkeypatch.setenv("TMPDIR", str(project / "tmp"))
    monkeypatch.setattr("tempfile.tempdir", None)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(project))
    folder = helper.cache_dir()
    assert not folder.startswith(str(project))
    with pytest.raises(helper.Failure, match="inside \\$CI_PROJECT_DIR"):
        helper.cache_dir(str(project / "cache"))


def test_cache_folder_that_is_not_private_is_refused_or_tightened(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(helper.Failure, match="not a folder"):
        helper.cache_dir(str(tmp_path / "link"))
    open_folder = tmp_path / "open"
    open_folder.mkdir(mode=0o777)
    open_folder.chmod(0o777)
    helper.cache_dir(str(open_folder))
    assert stat.S_IMODE(open_folder.stat().st_mode) == 0o700
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)
        with pytest.raises(helper.Failure, match="belongs to another user"):
            helper.cache_dir(str(theirs))


def test_cache_entries_are_named_and_sealed_by_their_token(tmp_path):
    folder = helper.cache_dir(str(tmp_path / "cache"))
    mine = helper.Cache(folder, b"token-a", b"ctx")
    entry = {"credentials": _credentials(), "expires": time.time() + 3600}
    mine.store(entry, keep_until=time.time() + 3600)
    assert mine.load() == entry
    [path] = Path(folder).glob("*.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"token-a" not in path.read_bytes() and b"ASIA" not in path.read_bytes()
    theirs = helper.Cache(folder, b"token-b", b"ctx")
    assert theirs.path != mine.path and theirs.load() is None
    theirs.path = mine.path  # even handed the file, another token cannot open it
    assert theirs.load() is None
    # A tampered entry is ignored.
    sealed = json.loads(path.read_text())
    sealed["body"] = sealed["body"][:-4] + ("AAAA" if not sealed["body"].endswith("AAAA") else "BBBB")
    path.write_text(json.dumps(sealed))
    assert mine.load() is None


def test_expired_entries_are_pruned_without_being_read(tmp_path):
    folder = helper.cache_dir(str(tmp_path / "cache"))
    old = helper.Cache(folder, b"old", b"ctx")
    old.store({"credentials": {}, "expires": 1}, keep_until=time.time() - 3600)
    current = helper.Cache(folder, b"new", b"ctx")
    current.store({"credentials": {}, "expires": time.time() + 3600}, keep_until=time.time() + 3600)
    assert not os.path.exists(old.path) and os.path.exists(current.path)
