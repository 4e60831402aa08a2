"""``python manage.py ARGS`` as a process forked from a warm interpreter (docs/architecture.md#tests).

A cold ``manage.py`` spends seconds importing Django, DRF, drf-spectacular, boto3, Celery and
psycopg before it does anything; the contract, CI-job and chaos tests run dozens of commands.
:func:`manage` sends each command to a helper process (one per test process, started on first
use) that imported those *third-party* libraries once and never configured Django: for each
command it forks a child that takes the command's environment, working directory, standard
input, output and error, then runs ``manage.py`` as ``__main__`` (its settings, apps and our
code are imported in the child, from that environment) and exits with its exit code. The
answer is a :class:`subprocess.CompletedProcess`, as ``subprocess.run(..., text=True)`` gives.

What the child cannot tell apart from a fresh interpreter: nothing our code or Django's settings
reads. The preloaded modules read no environment at import (they are the ones
``portal.settings`` itself imports before any setting exists); the helper checks that Django is
unconfigured before every fork. ``fresh=True`` (and the tests of the entry point itself, e.g.
``tests/registry/test_settings.py``) still run a genuine ``subprocess``;
``tests/contract/test_commands.py`` holds a test that both give the same answer.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Imported once by the helper: third-party only, none configures Django or reads the environment
# at import time (portal.settings imports the first ones itself, before any setting exists).
PRELOAD = (
    "django.core.management",
    "django.db.models",
    "django.contrib.postgres.fields",
    "django.template.defaulttags",
    "rest_framework.compat",
    "boto3",
    "botocore.session",
    "celery",
    "celery.app",
    "psycopg",
    "requests",
    "yaml",
    "jwt",
    "cryptography.hazmat.primitives.asymmetric.rsa",
)


def _exit_code(exc: SystemExit) -> int:
    """The exit status Python gives a ``SystemExit`` (a non-int code is printed, status 1)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


def _child(request: dict) -> None:
    """In the forked child: become ``python manage.py ARGS`` and never return."""
    code = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        stdin = os.open(request["stdin"] or os.devnull, os.O_RDONLY)
        stdout = os.open(request["stdout"], os.O_WRONLY | os.O_TRUNC)
        stderr = os.open(request["stderr"], os.O_WRONLY | os.O_TRUNC)
        for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
            os.dup2(fd, target)
            os.close(fd)
        script = os.path.join(request["cwd"], "manage.py")
        sys.argv = ["manage.py", *request["args"]]
        sys.path[0] = request["cwd"]  # what `python manage.py` puts first
        import runpy

        try:
            runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc)
        except BaseException:
            import traceback

            traceback.print_exc()  # as the interpreter prints an uncaught exception
            code = 1
        # What the interpreter does at exit: wait for non-daemon threads, run atexit handlers.
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve() -> None:
    """The helper: preload, then fork a child per request read from the protocol pipe."""
    # The protocol gets file descriptors of its own; 0 and 1 (whose Python buffers a child would
    # inherit) stay unread and unwritten.
    requests_in = os.fdopen(os.dup(0), "rb", buffering=0)
    answers_out = os.fdopen(os.dup(1), "wb", buffering=0)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    for name in PRELOAD:
        __import__(name)
    from django.apps import apps
    from django.conf import settings

    lines = iter(requests_in.readline, b"")
    for line in lines:
        request = json.loads(line)
        # A child must start as unconfigured as a fresh interpreter.
        assert not settings.configured and not apps.ready, "the helper configured Django"
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            requests_in.close()
            answers_out.close()
            _child(request)
        answers_out.write(json.dumps({"pid": pid}).encode() + b"\n")
        _, status = os.waitpid(pid, 0)
        answers_out.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode() + b"\n")


class _Helper:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.command_runner"],
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # a helper's own failure shows in the test's output
        )
        self.lock = threading.Lock()

    def _answer(self, deadline: float | None) -> dict:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        line = b""
        while not line.endswith(b"\n"):
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([fd], [], [], wait)[0]:
                raise TimeoutError
            chunk = os.read(fd, 1)
            if not chunk:
                raise RuntimeError(f"the command helper exited ({self.process.poll()})")
            line += chunk
        return json.loads(line)

    def run(self, args: list[str], env: dict[str, str], cwd: Path, input: str | None, timeout: float | None):
        with self.lock, tempfile.TemporaryDirectory(prefix="rg_manage_") as tmp:
            paths = {name: Path(tmp) / name for name in ("stdin", "stdout", "stderr")}
            for path in paths.values():
                path.touch()
            if input is not None:
                paths["stdin"].write_text(input)
            request = {
                "args": args,
                "env": env,
                "cwd": str(cwd),
                "stdin": str(paths["stdin"]) if input is not None else None,
                "stdout": str(paths["stdout"]),
                "stderr": str(paths["stderr"]),
            }
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
            deadline = None if timeout is None else time.monotonic() + timeout
            pid = self._answer(None)["pid"]
            try:
                returncode = self._answer(deadline)["returncode"]
            except TimeoutError:
                os.kill(pid, 9)  # the child this helper forked for us, by its id
                self._answer(None)
                raise subprocess.TimeoutExpired(["manage.py", *args], timeout or 0) from None
            out, err = paths["stdout"].read_text(), paths["stderr"].read_text()
        return subprocess.CompletedProcess(["manage.py", *args], returncode, out, err)

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()  # the helper ends at the end of its input
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_helper: _Helper | None = None
_helper_lock = threading.Lock()


def manage(
    *args: str,
    env: dict[str, str],
    cwd: Path = ROOT,
    input: str | None = None,
    timeout: float | None = 60,
    fresh: bool = False,
) -> subprocess.CompletedProcess:
    """``python manage.py ARGS`` with exactly ``env`` (forked warm; ``fresh=True``: a new interpreter)."""
    if fresh:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=cwd,
            env=env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    global _helper
    with _helper_lock:
        if _helper is None or _helper.process.poll() is not None:
            _helper = _Helper()
            atexit.register(_helper.stop)
        helper = _helper
    return helper.run(list(args), env, cwd, input, timeout)


if __name__ == "__main__":
    serve()
