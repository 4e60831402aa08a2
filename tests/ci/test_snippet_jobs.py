"""Every job the admin page generates, run as a shell executor runs it (``bash -e``), with the real
AWS CLI, a live Rolegate and moto, on a runner that has an AWS identity of its own.

A granted job works as the role; a refused one stops with Rolegate's error_description and
request_id (or STS's error) in its log; the runner's identity is never used, in either case.
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.ci.conftest import LEGACY, PROD
from tests.ci.jobs import resolve
from tests.ci.test_component_jobs import WEB_MAIN, identities, mint

ROLEGATE_FLOWS = ["component_job", "credentials_job", "sts_job"]


def job_of(live, mapping: str, variant: str, script: list[str] | None = None) -> dict:
    jobs = resolve(live.snippets[mapping][variant])
    [name] = [name for name in jobs if not name.startswith(".")]
    job = jobs[name]
    if script is not None:
        job["script"] = job["script"][:-1] + script  # the snippet's setup, then the test's commands
    return job


@pytest.mark.parametrize("variant", ROLEGATE_FLOWS)
def test_a_granted_job_works_as_the_role_and_never_as_the_runner(ci_live, runner, variant):
    job_id = str(2000 + ROLEGATE_FLOWS.index(variant))
    job = job_of(
        ci_live,
        "web-main-deploy",
        variant,
        ["aws sts get-caller-identity --query Arn --output text", "aws iam list-roles --query 'length(Roles)'"],
    )
    result = runner.run(job, tokens=mint(ci_live, job, WEB_MAIN, job_id=job_id), job_id=job_id)
    assert result.returncode == 0, result
    assert identities(result.output) == [f"arn:aws:sts::{PROD}:assumed-role/deploy-web/gl-20-{job_id}"]
    [event] = ci_live.audit(job_id=job_id)
    assert event["outcome"] == "granted"
    assert runner.untouched()
    assert "ASIA" not in result.output  # no credentials in the job log


@pytest.mark.parametrize("variant", ROLEGATE_FLOWS)
def test_a_refused_job_stops_with_rolegates_error_and_request_id(ci_live, runner, variant):
    job_id = str(2100 + ROLEGATE_FLOWS.index(variant))
    job = job_of(ci_live, "web-main-deploy", variant, ["echo not-reached", "aws sts get-caller-identity"])
    unprotected = dict(WEB_MAIN, ref_protected="false")  # the mapping takes protected refs only
    result = runner.run(job, tokens=mint(ci_live, job, unprotected, job_id=job_id), job_id=job_id)
    assert result.returncode != 0, result
    assert "not-reached" not in result.output
    [event] = ci_live.audit(job_id=job_id)
    assert (event["outcome"], event["reason"]) == ("denied", "no_matching_mapping")
    assert "invalid_target" in result.output
    assert event["detail"] in result.output.replace('\\"', '"')
    assert event["request_id"] in result.output
    assert "curl: (22)" not in result.output and "KeyError" not in result.output
    assert runner.untouched() and "user/runner" not in result.output


class RefusingSts:
    """AWS STS that refuses every AssumeRoleWithWebIdentity (like a role still pending sync)."""

    BODY = (
        b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
        b"<Code>AccessDenied</Code><Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message>"
        b"</Error><RequestId>sts-refusal-1</RequestId></ErrorResponse>"
    )

    def __enter__(self):
        body = self.BODY

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(403)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(("mapping", "variant"), [("web-main-deploy", "sts_job"), ("legacy-web", "direct_job")])
def test_an_sts_refusal_stops_the_job_and_never_falls_back_to_the_runner(ci_live, runner, mapping, variant):
    """The failure the old snippet hid behind ``export $(...)``: STS says no, the job stops."""
    job = job_of(ci_live, mapping, variant, ["echo not-reached", "aws sts get-caller-identity"])
    with RefusingSts() as sts:
        result = runner.run(
            job, tokens=mint(ci_live, job, WEB_MAIN, job_id="2200"), extra_env={"AWS_ENDPOINT_URL_STS": sts.url}
        )
    assert result.returncode != 0, result
    assert "AccessDenied" in result.output
    assert "not-reached" not in result.output
    assert runner.untouched() and "user/runner" not in result.output


def test_a_direct_mode_mapping_gets_the_direct_flow(ci_live, runner):
    snippets = ci_live.snippets["legacy-web"]
    assert snippets["direct"] and snippets["component_job"] is snippets["credentials_job"] is None
    job = job_of(ci_live, "legacy-web", "direct_job", ["aws sts get-caller-identity --query Arn --output text"])
    assert job["id_tokens"] == {"AWS_ID_TOKEN": {"aud": "https://rolegate.example.com"}}  # the issuer's audience
    result = runner.run(job, tokens=mint(ci_live, job, WEB_MAIN, job_id="2300"), job_id="2300")
    assert result.returncode == 0, result
    assert set(identities(result.output)) == {f"arn:aws:sts::{LEGACY}:assumed-role/deploy-old/gl-20-2300"}
    assert ci_live.audit(job_id="2300") == []  # Rolegate is not involved
    assert runner.untouched()


def test_a_direct_job_without_its_id_token_stops(ci_live, runner):
    job = job_of(ci_live, "legacy-web", "direct_job", ["echo not-reached"])
    result = runner.run(job, tokens={"AWS_ID_TOKEN": ""})
    assert result.returncode != 0 and "not-reached" not in result.output, result
    assert "No GitLab ID token in $AWS_ID_TOKEN" in result.output
    assert runner.untouched()


@pytest.mark.parametrize("variant", ROLEGATE_FLOWS)
def test_an_environment_pattern_gets_an_example_environment_that_the_mapping_takes(ci_live, runner, variant):
    """web-review-apps takes environments review/*: the pasted job names one, and is granted."""
    job_id = str(2400 + ROLEGATE_FLOWS.index(variant))
    text = ci_live.snippets["web-review-apps"][variant]
    assert re.search(r"# The mapping takes any environment matching 'review/\*'", text)
    job = job_of(ci_live, "web-review-apps", variant, ["aws sts get-caller-identity --query Arn --output text"])
    assert job["environment"] == "review/example"
    unprotected = dict(WEB_MAIN, ref="feature", ref_protected="false")
    result = runner.run(job, tokens=mint(ci_live, job, unprotected, job_id=job_id), job_id=job_id)
    assert result.returncode == 0, result
    assert identities(result.output) == [f"arn:aws:sts::{PROD}:assumed-role/review-apps/gl-20-{job_id}"]
    [event] = ci_live.audit(job_id=job_id)
    assert (event["outcome"], event["environment"]) == ("granted", "review/example")
