"""The GitLab CI/CD component (templates/aws.yml) with the real AWS CLI, a live Rolegate and moto.

Jobs are the admin page's component snippet, resolved and run as a shell executor runs them
(tests/ci/jobs.py). The helper's clock is moved forward where a test needs a long job: a
``python3`` wrapper runs the helper with ``time.time`` shifted by the seconds in $CLOCK_FILE;
the AWS CLI, Rolegate and moto keep the real time.
"""

from __future__ import annotations

import calendar
import copy
import os
import re
import stat
import time

import pytest

from tests.ci.conftest import PROD
from tests.ci.jobs import Runner, audiences, resolve, token_claims
from tests.conftest import load_claim_examples

WEB_MAIN = load_claim_examples()["protected_main_push"]
HELPER = "rolegate-credential-process.py"

CLOCK_SHIFT = """\
import os, runpy, sys, time
_real = time.time
_offset = float(open(os.environ["CLOCK_FILE"]).read().strip() or 0)
time.time = lambda: _real() + _offset
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def component_job(live, mapping: str) -> dict:
    jobs = resolve(live.snippets[mapping]["component_job"])
    [name] = [name for name in jobs if not name.startswith(".")]
    return jobs[name]


def mint(live, job: dict, claims: dict, **overrides) -> dict[str, str]:
    """The job's ID tokens, as GitLab would mint them for it."""
    return {
        variable: live.token(token_claims(job, claims), aud=aud, **overrides)
        for variable, aud in audiences(job).items()
    }


def with_clock(runner: Runner, tmp_path) -> dict[str, str]:
    """Make the job's ``python3`` run the helper on a clock that $CLOCK_FILE moves forward."""
    real = os.path.realpath(runner.bin / "python3")
    (runner.bin / "python3").unlink()
    (tmp_path / "clock_shift.py").write_text(CLOCK_SHIFT)
    (runner.bin / "python3").write_text(
        f'#!/bin/sh\ncase "$1" in *{HELPER}) exec {real} {tmp_path / "clock_shift.py"} "$@";; esac\nexec {real} "$@"\n'
    )
    (runner.bin / "python3").chmod(0o755)
    clock = tmp_path / "clock"
    clock.write_text("0")
    return {"CLOCK_FILE": str(clock)}


def _epoch(iso: str) -> float:
    return calendar.timegm(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S"))


def identities(output: str) -> list[str]:
    """The ARNs that ``aws sts get-caller-identity`` printed (assumed roles and users)."""
    return re.findall(r"arn:aws:(?:sts::\d{12}:assumed-role|iam::\d{12}:user)/[\w+=,.@/-]+", output)


def test_the_runner_stand_in_is_what_an_unguarded_job_would_use(runner):
    """Control: without Rolegate's setup, the AWS CLI on this runner IS the runner."""
    result = runner.run({"script": ["aws sts get-caller-identity --query Arn --output text"]}, tokens={})
    assert result.returncode == 0, result
    [identity] = identities(result.output)
    assert identity.endswith(":user/runner")


TEN_COMMANDS = [
    "aws sts get-caller-identity --query Arn --output text",
    "aws s3 mb s3://rolegate-ten",
    "echo hello > hello.txt",
    "aws s3 cp hello.txt s3://rolegate-ten/hello.txt",
    "aws s3 ls s3://rolegate-ten/",
    "aws s3api head-object --bucket rolegate-ten --key hello.txt --query ContentLength",
    "aws s3 cp s3://rolegate-ten/hello.txt copy.txt && cmp hello.txt copy.txt",
    "aws iam list-roles --query 'length(Roles)'",
    "aws s3 rm s3://rolegate-ten/hello.txt",
    "aws s3 rb s3://rolegate-ten",
    "aws sts get-caller-identity --query Arn --output text",
    "echo ten-commands-done",
]


def test_ten_aws_commands_in_one_job_take_one_exchange(ci_live, runner):
    job = component_job(ci_live, "web-main-deploy")
    job["script"] = TEN_COMMANDS
    started = time.time()
    result = runner.run(job, tokens=mint(ci_live, job, WEB_MAIN, job_id="1010"), job_id="1010")
    print(f"--- the job's log ---\n{result}")  # shown by `pytest -rP`
    assert result.returncode == 0, result
    assert sum(command.startswith("aws ") for command in TEN_COMMANDS) == 10
    assert "ten-commands-done" in result.output
    assert set(identities(result.output)) == {f"arn:aws:sts::{PROD}:assumed-role/deploy-web/gl-20-1010"}
    [event] = ci_live.audit(job_id="1010")
    assert (event["outcome"], event["role_arn"]) == ("granted", f"arn:aws:iam::{PROD}:role/deploy-web")
    assert runner.untouched()
    # The job's token lasts 5 minutes: the session asked for covers it, at STS's 900 s minimum.
    expiration = re.search(r"until (\S+Z)", result.output).group(1)
    assert 890 <= _epoch(expiration) - started <= 910, result


def _cache_entries(runner: Runner) -> list:
    folder = runner.tmp / f"rolegate-{os.geteuid()}"
    return sorted(folder.glob("*.json"))


PRINT_EXPIRATION = "import json, sys; print('expires', json.load(sys.stdin)['Expiration'])"


def test_a_long_job_gets_one_session_until_its_token_expires(ci_live, runner, tmp_path):
    """A two-hour job (its ID token lasts two hours), a role whose maximum is three: one session
    lasting until the token expires, reused ninety minutes in."""
    job = component_job(ci_live, "web-long-jobs")
    exp = int(time.time()) + 7200
    job["script"] = [
        "aws sts get-caller-identity --query Arn --output text",
        'echo 5400 > "$CLOCK_FILE"',  # ninety minutes later
        "aws sts get-caller-identity --query Arn --output text",
        f'python3 "$ROLEGATE_DIR/{HELPER}" | python3 -c "{PRINT_EXPIRATION}"',
    ]
    env = with_clock(runner, tmp_path)
    result = runner.run(job, tokens=mint(ci_live, job, WEB_MAIN, job_id="1020", exp=exp), job_id="1020", extra_env=env)
    assert result.returncode == 0, result
    assert identities(result.output) == [f"arn:aws:sts::{PROD}:assumed-role/long-jobs/gl-20-1020"] * 2
    expires = re.search(r"expires (\S+)", result.output).group(1)
    assert exp - 5 <= _epoch(expires) <= exp + 5, (expires, exp)
    [event] = ci_live.audit(job_id="1020")
    assert event["outcome"] == "granted"
    assert runner.untouched()


def test_a_job_outliving_the_roles_maximum_session_gets_the_helpers_message(ci_live, runner, tmp_path):
    """deploy-web's maximum session is one hour; a job whose token lasts two hours gets that hour,
    and a command after it fails with what to change, not with a replay refusal."""
    job = component_job(ci_live, "web-main-deploy")
    job["script"] = [
        "aws sts get-caller-identity --query Arn --output text",
        'echo 3590 > "$CLOCK_FILE"',
        "aws sts get-caller-identity --query Arn --output text",
        "echo not-reached",
    ]
    env = with_clock(runner, tmp_path)
    exp = int(time.time()) + 7200
    result = runner.run(job, tokens=mint(ci_live, job, WEB_MAIN, job_id="1030", exp=exp), job_id="1030", extra_env=env)
    assert result.returncode != 0, result
    assert "not-reached" not in result.output
    assert identities(result.output) == [f"arn:aws:sts::{PROD}:assumed-role/deploy-web/gl-20-1030"]
    # Warned at the start, then the reason and what to change.
    assert "it ends before the job's ID token" in result.output
    assert "this job outlived its AWS session" in result.output
    assert "max_session_seconds" in result.output
    assert 7190 <= int(re.search(r"at least (\d+) s", result.output).group(1)) <= 7200, result
    assert "already exchanged" not in result.output and "invalid_grant" not in result.output
    [event] = ci_live.audit(job_id="1030")  # no second exchange was even tried
    assert event["outcome"] == "granted"
    assert runner.untouched()


def test_two_jobs_on_one_machine_never_read_each_others_cache(ci_live, runner):
    job = component_job(ci_live, "web-main-deploy")
    job["script"] = ["aws sts get-caller-identity --query Arn --output text"]
    tokens_a = mint(ci_live, job, WEB_MAIN, job_id="1041")
    tokens_b = mint(ci_live, job, WEB_MAIN, job_id="1042", project_id="21", project_path="platform/web")
    first = runner.run(job, tokens=tokens_a, job_id="1041")
    second = runner.run(job, tokens=tokens_b, job_id="1042", project_id="21")
    again = runner.run(copy.deepcopy(job), tokens=tokens_a, job_id="1041")
    for result in (first, second, again):
        assert result.returncode == 0, result
    assert (
        identities(first.output)
        == identities(again.output)
        == [f"arn:aws:sts::{PROD}:assumed-role/deploy-web/gl-20-1041"]
    )
    assert identities(second.output) == [f"arn:aws:sts::{PROD}:assumed-role/deploy-web/gl-21-1042"]
    assert len(ci_live.audit(job_id="1041")) == 1 and len(ci_live.audit(job_id="1042")) == 1
    # Two entries in one private folder, named and sealed by their tokens, holding neither token.
    entries = _cache_entries(runner)
    assert len(entries) == 2
    folder = entries[0].parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for entry in entries:
        assert stat.S_IMODE(entry.stat().st_mode) == 0o600
        text = entry.read_text()
        for token in (*tokens_a.values(), *tokens_b.values()):
            assert token not in text and token[-20:] not in text and token[-20:] not in entry.name
        assert "AccessKeyId" not in text and "ASIA" not in text  # sealed
    assert folder.parent == runner.tmp  # $TMPDIR, not the project directory


@pytest.mark.parametrize("shell", [("bash", "-e", "-c"), ("sh", "-e", "-c")])
def test_a_refusal_stops_the_job_with_rolegates_answer(ci_live, runner, shell):
    job = component_job(ci_live, "web-main-deploy")
    job["script"] = ["echo not-reached", "aws sts get-caller-identity"]
    unprotected = dict(WEB_MAIN, ref_protected="false")
    result = runner.run(job, tokens=mint(ci_live, job, unprotected, job_id="1050"), job_id="1050", shell=shell)
    assert result.returncode != 0, result
    assert "not-reached" not in result.output
    [event] = [e for e in ci_live.audit(job_id="1050") if e["request_id"] in result.output]
    assert event["outcome"] == "denied"
    assert f"invalid_target: {event['detail']} (request_id {event['request_id']})" in result.output
    assert runner.untouched() and "user/runner" not in result.output
