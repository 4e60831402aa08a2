"""Run a generated ``.gitlab-ci.yml`` job the way a GitLab shell executor does, on this machine.

- ``include: - component:`` is resolved to this repository's ``templates/<name>.yml``, with the
  ``spec: inputs:`` defaults and ``$[[ inputs.NAME ]]`` interpolation GitLab applies;
- ``extends:`` merges the hidden job (hashes deep-merged, arrays replaced, as GitLab does);
- the job's ``variables:`` and ``id_tokens:`` become environment variables (each ID token minted
  by the stand-in GitLab with the ``aud`` the job asks for and the job's ``environment``);
- ``before_script`` + ``script`` run in ONE ``bash -e`` process, like the runner's generated
  script, in a project directory, with a runner that has its own AWS identity in every place the
  AWS CLI could find it (see :class:`Runner`).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from tests.exchange.servers import ROOT

TEMPLATES = ROOT / "templates"
AWS_CLI = Path(sys.executable).with_name("aws")
_INPUT = re.compile(r"\$\[\[\s*inputs\.([A-Za-z0-9_-]+)\s*\]\]")
_COMPONENT = re.compile(r"\A(?:\$CI_SERVER_FQDN|[A-Za-z0-9.-]+)/[A-Za-z0-9_./-]+/(?P<name>[A-Za-z0-9_-]+)@\S+\Z")


def component_documents(name: str) -> tuple[dict, str]:
    """The component's ``spec`` header and its body text (``templates/NAME.yml``)."""
    text = (TEMPLATES / f"{name}.yml").read_text()
    head, body = text.split("\n---\n", 1)
    return yaml.safe_load(head)["spec"], body


def interpolate(name: str, inputs: dict) -> dict:
    spec, body = component_documents(name)
    declared = spec["inputs"]
    unknown = set(inputs) - set(declared)
    assert not unknown, f"inputs the component does not declare: {unknown}"
    values = {}
    for key, definition in declared.items():
        definition = definition or {}
        if key in inputs:
            value = inputs[key]
        else:
            assert "default" in definition, f"input {key} is required"
            value = definition["default"]
        if "regex" in definition:
            assert re.search(definition["regex"], str(value)), f"input {key}={value!r} fails {definition['regex']}"
        values[key] = value

    def replace(match):
        return str(values[match.group(1)])

    return yaml.safe_load(_INPUT.sub(replace, body))


def _merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def resolve(text: str) -> dict[str, dict]:
    """The pipeline's jobs (hidden ones included) after includes and extends."""
    config = yaml.safe_load(text)
    for entry in config.pop("include", []) or []:
        match = _COMPONENT.match(entry["component"])
        assert match, entry
        for key, value in interpolate(match.group("name"), entry.get("inputs", {})).items():
            assert key not in config, f"the component redefines {key}"
            config[key] = value
    jobs = {}
    for name, job in config.items():
        if not isinstance(job, dict):
            continue
        for parent in [job.get("extends")] if isinstance(job.get("extends"), str) else job.get("extends") or []:
            job = _merge(config[parent], {k: v for k, v in job.items() if k != "extends"})
        jobs[name] = job
    return jobs


@dataclass
class JobResult:
    returncode: int
    output: str  # standard output and standard error, interleaved as in a job log

    def __str__(self) -> str:
        return f"exit {self.returncode}\n{self.output}"


class _Counter(BaseHTTPRequestHandler):
    """The runner's instance metadata service and container credentials endpoint: both hand out the
    runner's own identity, and count every request."""

    def _answer(self):
        self.server.hits.append(f"{self.command} {self.path}")
        if self.path == "/latest/api/token":
            body = b"imds-session-token"
        elif self.path.rstrip("/") == "/latest/meta-data/iam/security-credentials":
            body = b"runner-instance-profile"
        else:
            body = json.dumps(
                {
                    "Code": "Success",
                    "AccessKeyId": self.server.key_id,
                    "SecretAccessKey": self.server.secret,
                    "Token": "runner-token",
                    "Expiration": "2099-01-01T00:00:00Z",
                }
            ).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = _answer

    def log_message(self, *args):
        pass


@dataclass
class Runner:
    """A GitLab runner machine whose own AWS identity (an IAM user ``runner`` in moto) sits in the
    environment, in ``~/.aws/credentials``, behind a ``credential_process`` and a profile in
    ``~/.aws/config``, at a container credentials URL and an instance metadata service. A job
    that ever uses it shows ``user/runner`` or leaves a hit in :attr:`hits` / :attr:`marker`."""

    root: Path
    moto_url: str
    key_id: str
    secret: str
    hits: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.home = self.root / "home"
        self.tmp = self.root / "tmp"  # the machine's TMPDIR, shared by all its jobs
        self.bin = self.root / "bin"
        for folder in (self.home / ".aws", self.tmp, self.bin):
            folder.mkdir(parents=True, exist_ok=True)
        self.marker = self.root / "runner-credential-process-ran"
        (self.bin / "runner-credentials").write_text(
            f"#!/bin/sh\ntouch {self.marker}\n"
            f'echo \'{{"Version": 1, "AccessKeyId": "{self.key_id}", "SecretAccessKey": "{self.secret}"}}\'\n'
        )
        (self.bin / "runner-credentials").chmod(0o755)
        (self.home / ".aws" / "credentials").write_text(
            f"[default]\naws_access_key_id = {self.key_id}\naws_secret_access_key = {self.secret}\n"
        )
        (self.home / ".aws" / "config").write_text(
            f"[default]\nregion = us-east-1\n[profile runner]\ncredential_process = {self.bin / 'runner-credentials'}\n"
        )
        # The job's python3 and aws: the AWS CLI of the test environment, any python3 3.8+.
        (self.bin / "aws").symlink_to(AWS_CLI)
        python3 = shutil.which("python3") or sys.executable
        (self.bin / "python3").symlink_to(python3)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
        self.server.daemon_threads = True
        self.server.hits = self.hits
        self.server.key_id, self.server.secret = self.key_id, self.secret
        self.stand_in_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def environment(self) -> dict[str, str]:
        """What a job on this runner inherits before GitLab adds its variables."""
        return {
            "PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "TMPDIR": str(self.tmp),
            "LANG": "C.UTF-8",
            "AWS_ENDPOINT_URL": self.moto_url,  # AWS itself is moto
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_PROFILE": "runner",
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": self.stand_in_url,
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"{self.stand_in_url}/container-credentials",
        }

    def untouched(self) -> bool:
        return not self.hits and not self.marker.exists()

    def run(
        self,
        job: dict,
        *,
        tokens: dict[str, str],
        project_id: str = "20",
        job_id: str = "302",
        extra_env: dict[str, str] | None = None,
        extra_script: list[str] | None = None,
        shell: tuple[str, ...] = ("bash", "-e", "-c"),
    ) -> JobResult:
        """Run ``job`` with its ID tokens already minted (``tokens``: variable -> token)."""
        assert set(tokens) == set(job.get("id_tokens", {})), (set(tokens), job.get("id_tokens"))
        project_dir = self.root / "builds" / f"project-{project_id}-{job_id}"
        project_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **self.environment(),
            "CI": "true",
            "GITLAB_CI": "true",
            "CI_SERVER_FQDN": "gitlab.example.com",
            "CI_PROJECT_ID": project_id,
            "CI_JOB_ID": job_id,
            "CI_PROJECT_DIR": str(project_dir),
            **{key: str(value) for key, value in (job.get("variables") or {}).items()},
            **tokens,
            **(extra_env or {}),
        }
        script = "\n".join([*(job.get("before_script") or []), *(job.get("script") or []), *(extra_script or [])])
        result = subprocess.run(
            [*shell, script],
            env=env,
            cwd=project_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=180,
        )
        return JobResult(result.returncode, result.stdout)


def token_claims(job: dict, base: dict) -> dict:
    """The claims GitLab puts in the job's ID token: ``base`` plus the job's environment."""
    claims = dict(base)
    environment = job.get("environment")
    if isinstance(environment, dict):
        environment = environment.get("name")
    if environment:
        claims["environment"] = environment
    else:
        claims.pop("environment", None)
    return claims


def audiences(job: dict) -> dict[str, str]:
    """Each ID token variable of the job and the ``aud`` it asks for."""
    return {name: spec["aud"] for name, spec in (job.get("id_tokens") or {}).items()}
