"""docs/commands.md#conventions for every command of ours: whatever fails -- a mistyped option, a
missing argument, a value not among the choices, a database that refuses every query -- the
command exits non-zero with one line of reason on standard error and prints nothing on standard
output: never a traceback, never argparse's usage screen.

Most cases run the command line in this process (``manage.py``'s own entry point, so that Django
parses the arguments as it does from a shell); one runs ``manage.py`` as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import execute_from_command_line

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = sorted(path.stem for path in ROOT.glob("*/management/commands/*.py") if not path.stem.startswith("_"))
# Arguments each command accepts, so that it gets as far as the database.
VALID_ARGUMENTS = {
    "accept_identity_change": ["platform/web", "20", "--note", "re-created"],
    "apply": ["/dev/null"],
    "create_api_token": ["lead"],
    "revoke_sessions": ["prod/deploy-web"],
}


def command_line(capsys, *argv: str) -> tuple[int, str, str]:
    """``manage.py ARGV`` in this process: (exit status, standard output, standard error)."""
    try:
        execute_from_command_line(["manage.py", *argv])
        status = 0
    except SystemExit as exit:
        status = exit.code if isinstance(exit.code, int) else 1
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_failure(status: int, out: str, err: str) -> str:
    assert status != 0, out
    assert out == "", out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("CommandError: "), err
    return lines[0]


def test_every_command_is_listed():
    assert {"apply", "export", "sync_iam", "audit_export", "rotate_signing_key", "create_api_token"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_option_is_one_line_naming_it(command, capsys):
    status, out, err = command_line(capsys, command, *VALID_ARGUMENTS.get(command, []), "--no-such-option")
    assert status == 2
    assert "--no-such-option" in assert_one_line_failure(status, out, err)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["audit_export", "--format", "xml"], "'xml'"),
        (["apply"], "file"),
        (["create_api_token"], "username"),
        (["sync_iam", "--account"], "--account"),
        (["revoke_sessions", "prod/deploy-web", "--timeout", "soon"], "'soon'"),
    ],
)
def test_a_missing_argument_or_a_bad_value_is_one_line_naming_it(argv, named, capsys):
    line = assert_one_line_failure(*command_line(capsys, *argv))
    assert named in line and f"manage.py {argv[0]} --help" in line


@pytest.mark.parametrize("command", COMMANDS)
def test_a_database_that_refuses_every_query_is_one_line(command, capsys):
    """No database access in this test: the first query raises (as when the database went away)."""
    line = assert_one_line_failure(*command_line(capsys, command, *VALID_ARGUMENTS.get(command, [])))
    assert "Traceback" not in line


def test_help_is_still_the_usage_screen(capsys):
    status, out, _ = command_line(capsys, "audit_export", "--help")
    assert status == 0 and out.startswith("usage: ") and "--format" in out


def test_call_command_still_raises_command_error_for_bad_arguments():
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="invalid choice"):
        call_command("audit_export", "--format", "xml")


def test_a_shell_sees_one_line_and_status_2_for_a_usage_mistake(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "ROLEGATE_", "DATABASE_URL"))}
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DJANGO_SECRET_KEY="command-conventions-secret-0123456789abcdefghijklmnopqrstuvwxyz",
        DATABASE_URL=f"sqlite:///{tmp_path / 'none.sqlite3'}",
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "audit_export", "--format", "xml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    line = assert_one_line_failure(done.returncode, done.stdout, done.stderr)
    assert "invalid choice: 'xml'" in line
