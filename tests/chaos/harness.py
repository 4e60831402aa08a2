"""Fault injection: Rolegate under gunicorn, exchange load, a dependency taken away and given
back, and the figures (docs/operations.md "Failure behaviour").

Everything runs on 127.0.0.1 and is started here: a throwaway PostgreSQL cluster, a stand-in
GitLab, moto for STS, our own redis-server, TCP proxies that make a dependency slow or
unreachable. The shared services are never touched. Each load loop stops by itself.

Per scenario: requests sent, answers by status (0: no answer), 500s (must be 0), grants whose
audit event is missing (must be 0), and the seconds from the dependency's return to the first
granted exchange (or, where the exchange never stopped, to the first sign the dependency is used
again).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import requests

from tests import command_runner
from tests.chaos.stand_ins import OwnPostgreSQL, OwnRedis, free_port, wait_port
from tests.conftest import load_claim_examples
from tests.exchange.gitlab_stand_in import GitLabKey, StandInGitLab
from tests.exchange.servers import RolegateServer

ROOT = Path(__file__).resolve().parent.parent.parent
GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ROLE_ARN = "arn:aws:iam::123456789012:role/deploy-web"
AUDIENCE = "https://rolegate.example.com"
SECRET = "chaos-secret-key-not-for-production-0123456789abcdefghijklmnop"


@dataclass
class Figures:
    scenario: str
    sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    unaudited_grants: int = 0
    recovery_seconds: float | None = None
    slowest_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return self.statuses[500]

    def row(self) -> str:
        statuses = " ".join(f"{status or 'none'}:{count}" for status, count in sorted(self.statuses.items()))
        recovery = "-" if self.recovery_seconds is None else f"{self.recovery_seconds:.1f}"
        return (
            f"| {self.scenario} | {self.sent} | {statuses} | {self.server_errors} | {self.unaudited_grants} "
            f"| {self.slowest_seconds:.1f} | {recovery} | {'; '.join(self.notes)} |"
        )


HEADER = (
    "| scenario | requests | answers by status | 500s | grants without audit | slowest answer (s) | recovery (s) "
    "| notes |\n|---|---|---|---|---|---|---|---|"
)


# --- a TCP proxy that fails on demand ----------------------------------------------------------


class FaultProxy:
    """127.0.0.1:<port> -> 127.0.0.1:<target>: ``up`` relays, ``slow`` accepts and never answers,
    ``down`` refuses new connections and cuts the open ones."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self.mode = "up"
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open()

    def _open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(client)
            if self.mode == "slow":
                continue  # held open, never answered (closed when the mode changes)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.append(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _cut(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def set(self, mode: str) -> None:
        previous, self.mode = self.mode, mode
        self._cut()
        if mode == "down" and self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            self._listener.close()
            self._listener = None
        elif mode != "down" and previous == "down":
            self._open()

    def stop(self) -> None:
        self.set("down")


# --- load --------------------------------------------------------------------------------------


class Load:
    """``threads`` clients posting exchanges with fresh GitLab tokens until :meth:`stop`."""

    def __init__(self, url: str, mint: Callable[[], str], *, path: str = "/api/v1/token", threads: int = 3):
        self.url, self.mint, self.path = url + path, mint, path
        self.records: list[tuple[float, int, str | None]] = []
        self.slowest = 0.0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            data = {"grant_type": GRANT, "subject_token": self.mint(), "subject_token_type": JWT_TYPE}
            data["audience"] = ROLE_ARN
            started = time.monotonic()
            try:
                response = session.post(self.url, data=data, timeout=30)
                status, request_id = response.status_code, response.headers.get("X-Request-ID")
            except requests.RequestException:
                status, request_id = 0, None
                session = requests.Session()
                time.sleep(0.05)
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.records.append((time.monotonic(), status, request_id))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def first_granted_after(self, moment: float) -> float | None:
        times = [t for t, status, _ in self.records if t >= moment and status == 200]
        return min(times) - moment if times else None


# --- the stack ---------------------------------------------------------------------------------


class Stack:
    """A throwaway PostgreSQL cluster (migrated), a stand-in GitLab whose JWKS is reached through
    a :class:`FaultProxy`, moto behind another proxy as STS, and gunicorn on demand."""

    def __init__(self, workdir: Path | None = None):
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="rg_chaos_"))
        self.pg = OwnPostgreSQL().init()
        self.gitlab = StandInGitLab(GitLabKey())
        self.jwks_proxy = FaultProxy(int(self.gitlab.url.rsplit(":", 1)[1]))
        self.moto_port = free_port()
        self.moto = subprocess.Popen(
            [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(self.moto_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.moto_port, process=self.moto)
        self.sts_proxy = FaultProxy(self.moto_port)
        self.claims = load_claim_examples()["protected_main_push"]
        self.servers: list[RolegateServer] = []
        done = self.manage("migrate", "--no-input", "-v", "0")
        if done.returncode != 0:
            raise RuntimeError(f"migrate failed: {done.stderr.strip()[-500:]}")
        self._apply()
        self._iam_role()

    def _iam_role(self) -> None:
        """The role in moto's IAM, so that a sync has something to update."""
        import boto3

        iam = boto3.client(
            "iam",
            endpoint_url=f"http://127.0.0.1:{self.moto_port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        iam.create_role(
            RoleName="deploy-web",
            AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
            '"Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}',
        )

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DATABASE_URL": self.pg.url,
            "DJANGO_SECRET_KEY": SECRET,
            "ROLEGATE_ALLOW_HTTP": "1",
            "ROLEGATE_ISSUER": "http://127.0.0.1:8000",
            "ROLEGATE_ISSUER_ALLOWED_NETWORKS": "127.0.0.0/8",
            "ROLEGATE_RATE_LIMIT": "0",
            "ROLEGATE_PROJECT_RATE_LIMIT": "0",
            "ROLEGATE_LOG_LEVEL": "CRITICAL",
            "ROLEGATE_JWKS_MIN_REFRESH_SECONDS": "2",
            "ROLEGATE_JWKS_FETCH_SECONDS": "2",
            "AWS_ENDPOINT_URL_STS": f"http://127.0.0.1:{self.sts_proxy.port}",
            "AWS_ENDPOINT_URL_IAM": f"http://127.0.0.1:{self.moto_port}",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "CELERY_BROKER_URL": "",
            "ROLEGATE_CACHE_URL": "",
        }
        env.update(extra)
        return env

    def manage(self, *argv: str, **env: str) -> subprocess.CompletedProcess:
        """``manage.py ARGV`` in a process of its own, forked warm (tests/command_runner.py)."""
        return command_runner.manage(*argv, env={**os.environ, **self.env(**env)}, cwd=ROOT, timeout=300)

    def _apply(self, extra_mapping: str = "") -> subprocess.CompletedProcess:
        config = self.workdir / "rolegate.yaml"
        config.write_text(
            f"""issuers:
  - name: gitlab-chaos
    url: {self.gitlab.url}
    audiences: [{AUDIENCE}]
    jwks_url: http://127.0.0.1:{self.jwks_proxy.port}/oauth/discovery/keys
accounts:
  - name: prod
    account_id: "123456789012"
    mode: brokered
    audience: sts.amazonaws.com
roles:
  - account: prod
    name: deploy-web
mappings:
  - name: web-main-deploy
    issuer: gitlab-chaos
    role: prod/deploy-web
    project: platform/web
    ref: main
{extra_mapping}"""
        )
        done = self.manage("apply", str(config))
        if done.returncode != 0:
            raise RuntimeError(f"apply failed: {done.stderr.strip()}")
        return done

    def registry_write(self, name: str, **env: str) -> subprocess.CompletedProcess:
        """An admin write (a new mapping through ``apply``) while something is down."""
        config = self.workdir / f"{name}.yaml"
        text = (self.workdir / "rolegate.yaml").read_text()
        config.write_text(
            text
            + f"""  - name: {name}
    issuer: gitlab-chaos
    role: prod/deploy-web
    project: platform/{name}
"""
        )
        return self.manage("apply", str(config), **env)

    def mint(self) -> str:
        return self.gitlab.mint(self.gitlab.claims(self.claims, aud=AUDIENCE))

    def serve(self, *, workers: int = 2, threads: int = 2, **env: str) -> RolegateServer:
        server = RolegateServer(
            port=free_port(), env=self.env(**env), workers=workers, threads=threads, log=self.workdir / "gunicorn.log"
        )
        self.servers.append(server)
        server.wait_ready(timeout=60)
        return server

    def unaudited_grants(self, load: Load) -> int:
        granted = {request_id for _, status, request_id in load.records if status == 200}
        if not granted:
            return 0
        with psycopg.connect(self.pg.url, connect_timeout=10) as conn:
            rows = conn.execute(
                "SELECT request_id FROM exchange_auditevent WHERE outcome = 'granted' AND request_id = ANY(%s)",
                (list(granted),),
            ).fetchall()
        return len(granted - {row[0] for row in rows})

    def figures(self, name: str, load: Load, recovery: float | None, *notes: str) -> Figures:
        result = Figures(
            scenario=name,
            sent=len(load.records),
            recovery_seconds=recovery,
            slowest_seconds=load.slowest,
            notes=list(notes),
        )
        result.statuses.update(status for _, status, _ in load.records)
        result.unaudited_grants = self.unaudited_grants(load)
        return result

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()
        self.jwks_proxy.stop()
        self.sts_proxy.stop()
        if self.moto.poll() is None:
            self.moto.terminate()
            self.moto.wait(timeout=10)
        self.gitlab.stop()
        self.pg.destroy()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


# --- the scenarios -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    before: float = 2.0  # seconds of load before the fault
    fault: float = 3.0  # seconds the dependency is away
    after: float = 4.0  # seconds of load once it is back (at most, with ``settle``)
    # None: the whole ``after`` phase (``make chaos``'s figures). Else the phase ends this many
    # seconds of load after the service recovered (the suite: its assertions are on the recovery
    # and on every answer, not on how long the load ran).
    settle: float | None = None


def load_after(load: Load, back: float, timing: Timing) -> None:
    """The load phase once the dependency is back (``timing.after``, or until it settled)."""
    deadline = back + timing.after
    while (now := time.monotonic()) < deadline:
        if timing.settle is not None:
            recovered = load.first_granted_after(back)
            if recovered is not None and now >= back + recovered + timing.settle:
                return
        time.sleep(0.05)


def postgresql_restarted(stack: Stack, timing: Timing) -> Figures:
    server = stack.serve()
    with Load(server.url, stack.mint) as load:
        time.sleep(timing.before)
        stack.pg.stop("fast")
        time.sleep(timing.fault)
        stack.pg.start()
        back = time.monotonic()
        load_after(load, back, timing)
    server.stop()
    return stack.figures("PostgreSQL restarted", load, load.first_granted_after(back))


def redis_stopped(stack: Stack, timing: Timing) -> Figures:
    redis = OwnRedis().start()
    server = stack.serve(
        ROLEGATE_CACHE_URL=redis.url, ROLEGATE_RATE_LIMIT="1000000", ROLEGATE_PROJECT_RATE_LIMIT="1000000"
    )
    try:
        with Load(server.url, stack.mint) as load:
            time.sleep(timing.before)
            redis.stop()
            write = stack.registry_write("written-while-redis-down", ROLEGATE_CACHE_URL=redis.url)
            time.sleep(timing.fault)
            redis.start()
            back = time.monotonic()
            counted = None
            while time.monotonic() - back < timing.after:
                if counted is None and _redis_has_rate_counters(redis.port):
                    counted = time.monotonic() - back
                if (
                    counted is not None
                    and timing.settle is not None
                    and time.monotonic() - back >= counted + timing.settle
                ):
                    break
                time.sleep(0.1)
    finally:
        server.stop()
        redis.stop()
    notes = [f"admin write during the outage: exit {write.returncode}", "recovery: the limit counts again"]
    return stack.figures("Redis (cache) stopped", load, counted, *notes)


def _redis_has_rate_counters(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(b"KEYS *rate*\r\n")
        return not sock.recv(65536).startswith(b"*0")
    return False


def broker_stopped(stack: Stack, timing: Timing) -> Figures:
    """The Celery broker (our own redis) away: registry writes commit (roles pending); when it
    is back, a worker syncs them (IAM is moto)."""
    broker = OwnRedis().start()
    server = stack.serve(CELERY_BROKER_URL=broker.url)
    worker = None
    try:
        with Load(server.url, stack.mint) as load:
            time.sleep(timing.before)
            broker.stop()
            write = stack.registry_write("written-while-broker-down", CELERY_BROKER_URL=broker.url)
            time.sleep(timing.fault)
            broker.start()
            back = time.monotonic()
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool", "solo", "-Q", "celery",
                 "--loglevel", "WARNING"],
                cwd=ROOT,
                env={**os.environ, **stack.env(CELERY_BROKER_URL=broker.url)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            # The drift scan (beat, every 15 min) or sync_iam catches up; here sync_iam runs on the worker.
            sync = stack.manage("sync_iam", "--timeout", "60", CELERY_BROKER_URL=broker.url)
            synced = time.monotonic() - back if sync.returncode in (0, 1) else None
            remaining = max(0.0, timing.after - (time.monotonic() - back))
            time.sleep(remaining if synced is None or timing.settle is None else min(remaining, timing.settle))
    finally:
        server.stop()
        if worker is not None:
            worker.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(timeout=20)
            if worker.poll() is None:
                worker.kill()
        broker.stop()
    notes = [
        f"registry write during the outage: exit {write.returncode}",
        f"sync_iam after: exit {sync.returncode}, {sync.stdout.strip().splitlines()[-1:] or sync.stderr.strip()}",
        "recovery: the sync done",
    ]
    return stack.figures("Celery broker stopped", load, synced, *notes)


def sts(stack: Stack, timing: Timing, mode: str) -> Figures:
    server = stack.serve()
    with Load(server.url, stack.mint, path="/api/v1/credentials") as load:
        time.sleep(timing.before)
        stack.sts_proxy.set(mode)
        time.sleep(timing.fault)
        stack.sts_proxy.set("up")
        back = time.monotonic()
        load_after(load, back, timing)
    server.stop()
    return stack.figures(f"STS {mode}", load, load.first_granted_after(back), "credentials endpoint")


def jwks(stack: Stack, timing: Timing, mode: str) -> Figures:
    """GitLab's JWKS slow or down from the start: a new server has no keys (fresh cache)."""
    stack.jwks_proxy.set(mode)
    server = stack.serve()
    with Load(server.url, stack.mint) as load:
        time.sleep(timing.fault)
        health = _healthz_seconds(server.url)
        stack.jwks_proxy.set("up")
        back = time.monotonic()
        load_after(load, back, timing)
    server.stop()
    return stack.figures(
        f"GitLab JWKS {mode}", load, load.first_granted_after(back), f"/healthz during the fault: {health}"
    )


def _healthz_seconds(url: str) -> str:
    started = time.monotonic()
    try:
        status = requests.get(f"{url}/healthz", timeout=30).status_code
    except requests.RequestException as exc:
        return f"no answer ({type(exc).__name__})"
    return f"{status} in {time.monotonic() - started:.1f} s"


SCENARIOS: dict[str, Callable[[Stack, Timing], Figures]] = {
    "postgresql": postgresql_restarted,
    "redis": redis_stopped,
    "broker": broker_stopped,
    "sts-slow": lambda stack, timing: sts(stack, timing, "slow"),
    "sts-down": lambda stack, timing: sts(stack, timing, "down"),
    "jwks-slow": lambda stack, timing: jwks(stack, timing, "slow"),
    "jwks-down": lambda stack, timing: jwks(stack, timing, "down"),
}
