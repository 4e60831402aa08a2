"""Rolegate as real server processes (gunicorn) on 127.0.0.1, for tests and the bench."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent.parent


class RolegateServer:
    """``gunicorn portal.wsgi`` (or another ``app``) on ``port`` with Rolegate's worker (or another
    ``worker_class``); stop() ends it (and only it)."""

    def __init__(
        self,
        *,
        port: int,
        env: dict[str, str],
        workers: int = 1,
        threads: int = 1,
        log: Path | None = None,
        app: str = "portal.wsgi",
        worker_class: str = "portal.gunicorn_worker.RolegateWorker",
    ):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        self.process = subprocess.Popen(
            [
                gunicorn,
                app,
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--worker-class",
                worker_class,
                "--threads",
                str(threads),
                "--keep-alive",
                "5",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            # A log file is read by tests after the fact; a pipe nobody reads must stay small.
            stderr=log.open("ab") if log else subprocess.PIPE,
        )
        self.log = log

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                stderr = self.process.stderr
                output = self.log.read_bytes() if self.log else (stderr.read() if stderr else b"")
                raise RuntimeError(f"gunicorn exited: {output.decode()[-2000:]}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn on {self.url} did not become ready in {timeout} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()
