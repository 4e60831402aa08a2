#!/usr/bin/env python
"""``make bench``: load-test the token exchange and print its figures.

Starts Rolegate under gunicorn on PostgreSQL (a dedicated bench database), a stand-in GitLab on
127.0.0.1, registers the issuer and mappings, and drives ``POST /api/v1/token`` with wrk at 1, 4
and 16 concurrent clients, each request carrying a freshly minted GitLab token (a new jti, so
no replay). In the same run it measures the floor -- verify + sign + one INSERT in a tight loop
in one process -- before the first level and after each, and gives each level's ratio against
the two floors around it; and the matcher's decision time with 100,000 mappings. Traffic goes to
127.0.0.1 only; the whole run ends by itself in well under three minutes.

Environment: ``BENCH_DATABASE_URL`` (default postgres://postgres@127.0.0.1:5432/rolegate_bench),
``BENCH_WORKERS`` / ``BENCH_THREADS`` (gunicorn workers, Rolegate's threaded worker as deployed,
default one per CPU, and threads per worker, default 4), ``BENCH_SECONDS`` (target seconds per
level, default 6).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rolegate_bench")
WORKERS = int(os.environ.get("BENCH_WORKERS", str(os.cpu_count() or 1)))
THREADS = int(os.environ.get("BENCH_THREADS", "4"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "6"))
LEVELS = (1, 4, 16)
FLOOR_TOKENS = 1000  # per floor measurement: one before the first level and one after each
ENV = {
    "DJANGO_SETTINGS_MODULE": "portal.settings",
    "DATABASE_URL": BENCH_DATABASE_URL,
    "DJANGO_SECRET_KEY": "bench-secret-key-not-for-production-0123456789abcdefghijklmnop",
    "ROLEGATE_ALLOW_HTTP": "1",
    "ROLEGATE_RATE_LIMIT": "0",
    "ROLEGATE_PROJECT_RATE_LIMIT": "0",  # every bench request comes from one project
    "ROLEGATE_LOG_LEVEL": "WARNING",
    "ROLEGATE_ISSUER_ALLOWED_NETWORKS": "127.0.0.0/8",  # the stand-in GitLab on loopback
}
os.environ.update(ENV)


def say(message: str) -> None:
    print(message, flush=True)


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    say("wrk is missing: installing it with apt-get")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    subprocess.run([*sudo, "apt-get", "install", "-y", "-q", "wrk"], check=False, stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        sys.exit("bench: wrk is not installed and could not be installed (apt-get install wrk)")
    return found


def ensure_database() -> None:
    import psycopg

    parts = urlsplit(BENCH_DATABASE_URL)
    name = parts.path.lstrip("/")
    admin_url = parts._replace(path="/postgres").geturl()
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        sys.exit(f"bench: PostgreSQL is needed at {BENCH_DATABASE_URL}: {exc}")


def reset_data() -> None:
    from exchange.models import AuditEvent, SigningKey, UsedToken
    from mappings.models import Account, Issuer, Mapping, RegistryChange, RegistryVersion, Role

    for model in (AuditEvent, UsedToken, SigningKey, Mapping, Role, Account, Issuer, RegistryVersion, RegistryChange):
        model.objects.all().delete()


def add_mappings(count: int, *, prefix: str) -> None:
    """``count`` extra mappings of other projects, written in bulk (bench tooling, not a service)."""
    from mappings.models import Issuer, Mapping, Role
    from mappings.services import registry_changed

    issuer = Issuer.objects.get()
    roles = list(Role.objects.filter(account__mode="brokered"))
    batch = []
    for i in range(count):
        group, project = i % 2000, i // 2000
        pattern = f"{prefix}{group}/*" if i % 10 == 0 else f"{prefix}{group}/project{project}"
        batch.append(
            Mapping(name=f"{prefix}-{i:06d}", issuer=issuer, role=roles[i % len(roles)], project=pattern, ref="main")
        )
    Mapping.objects.bulk_create(batch, batch_size=5000)
    registry_changed(role_ids=[])


def mint_tokens(stand_in, claims: dict, count: int) -> list[str]:
    return [stand_in.mint(stand_in.claims(claims, exp=int(time.time()) + 3600)) for _ in range(count)]


def measure_floor(tokens: list[str]) -> dict:
    """verify + sign + one INSERT, in a tight loop in this process."""
    import uuid

    from django.utils import timezone

    from exchange import gitlab, keys
    from exchange.models import AuditEvent
    from mappings.selectors import registry

    issuers = registry().issuers_by_url  # the registry's plain values, as a process holds them
    timings = []
    start = time.perf_counter()
    for token in tokens:
        began = time.perf_counter()
        claims = gitlab.verify_id_token(token, issuers=issuers).claims
        now = int(time.time())
        keys.Signer({"iss": "floor", "sub": claims["sub"], "iat": now, "exp": now + 300, "jti": keys.new_jti()}).token()
        AuditEvent.objects.create(
            time=timezone.now(),
            request_id=uuid.uuid4().hex,
            endpoint="floor",
            outcome="granted",
            reason="granted",
            detail="floor",
            jti=claims["jti"],
        )
        timings.append(time.perf_counter() - began)
    elapsed = time.perf_counter() - start
    AuditEvent.objects.filter(endpoint="floor").delete()
    timings.sort()
    return {
        "rate": len(tokens) / elapsed,
        "p50_ms": statistics.median(timings) * 1000,
        "p99_ms": timings[int(len(timings) * 0.99) - 1] * 1000,
    }


def settle() -> None:
    """Before each measurement: a CHECKPOINT, so that the disk writes of what came before (the
    bench's setup, the previous level's rows) are not flushed in the middle of the next
    measurement, where a commit waiting behind them would stall for 100 ms and more. Skipped
    when the bench's database user may not checkpoint."""
    from django.db import DatabaseError, connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("CHECKPOINT")
    except DatabaseError as exc:
        say(f"  (no CHECKPOINT before the measurement: {exc})")


def floor_now(stand_in, claims: dict) -> dict:
    settle()
    floor = measure_floor(mint_tokens(stand_in, claims, FLOOR_TOKENS))
    say(f"  floor: {floor['rate']:.0f}/s, p50 {floor['p50_ms']:.2f} ms, p99 {floor['p99_ms']:.2f} ms")
    return floor


def run_level(wrk: str, url: str, tokens: list[str], clients: int, role_arn: str, workdir: Path) -> dict:
    """One wrk run: every token POSTed once. wrk is stopped (SIGINT, which makes it report) as
    soon as every request has its audit event, instead of idling to its -d limit."""
    import signal

    from exchange.models import AuditEvent

    threads = clients  # one connection per thread: see bench_wrk.lua
    path = workdir / f"tokens-{clients}.txt"
    path.write_text("\n".join(tokens) + "\n")
    before = AuditEvent.objects.count()
    process = subprocess.Popen(
        [
            wrk,
            "-t",
            str(threads),
            "-c",
            str(clients),
            "-d",
            "60s",
            "--timeout",
            "10s",
            "-s",
            str(ROOT / "scripts" / "bench_wrk.lua"),
            url,
            "--",
            str(path),
            str(threads),
            role_arn,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    seen, progress_at = 0, time.monotonic()
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.25)
        count = AuditEvent.objects.count() - before
        if count != seen:
            seen, progress_at = count, time.monotonic()
        # All tokens used (wrk may build one request it never sends), or no progress for a second.
        if count >= len(tokens) or (count and time.monotonic() - progress_at > 1.0):
            time.sleep(0.5)  # the last responses are on their way
            process.send_signal(signal.SIGINT)
            break
    try:
        stdout, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    line = next((ln for ln in stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        sys.exit(f"bench: wrk failed: {stdout[-1000:]} {stderr[-1000:]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    data["audit_rows"] = AuditEvent.objects.count() - before
    data["rate"] = data["requests"] / (data["duration_us"] / 1e6)
    return data


def measure_matcher(count: int) -> dict:
    """Decision time of THE matcher over a registry of ``count`` mappings, built from the database."""
    from datetime import UTC, datetime

    from mappings import selectors
    from mappings.matching import decide

    add_mappings(count - len(selectors.registry_rules()), prefix="scale")
    began = time.perf_counter()
    registry = selectors.registry()
    build = time.perf_counter() - began
    claims = {
        # Group 10 has 50 wildcard mappings ("scale10/*"): the token is checked against each one.
        "project_path": "scale10/project12",
        "ref": "main",
        "ref_type": "branch",
        "ref_protected": "true",
        "pipeline_source": "push",
        "namespace_path": "scale10",
    }
    now = datetime.now(UTC)
    role_arn = selectors.registry_rules()[0].role_arn
    timings = []
    for _ in range(2000):
        began = time.perf_counter()
        decision = decide(registry, issuer="gitlab-test", claims=claims, now=now, role_arn=role_arn)
        timings.append(time.perf_counter() - began)
    timings.sort()
    return {
        "mappings": registry.size,
        "candidates": len(decision.evaluations),
        "build_s": build,
        "p50_us": statistics.median(timings) * 1e6,
        "p99_us": timings[int(len(timings) * 0.99) - 1] * 1e6,
        **measure_patches(),
    }


def measure_patches() -> dict:
    """What the first request after a registry change waits for at this size: one change through
    the services (create, update, delete of a mapping), then ``registry()`` as a request calls it
    -- the change log read and the snapshot patched, in this process (every server process does
    the same once); then changes to the role holding a quarter of the mappings, to its account,
    and the role's deletion, each reaching all of the role's mappings."""
    from mappings import selectors, services
    from mappings.models import Account, Issuer, Mapping, Role

    def timed(change) -> float:
        selectors.registry()
        change()
        began = time.perf_counter()
        selectors.registry()
        return (time.perf_counter() - began) * 1000

    issuer = Issuer.objects.get()
    big = Role.objects.filter(account__mode="brokered").order_by("id").first()
    if big is None:
        raise RuntimeError("the bench's registry has no brokered role")
    # The mappings changed here get a role of their own: the services check the trust policy of
    # the role a write touches, which for a role holding 25,000 of the bench's mappings is slow
    # (and not what is measured here).
    role = services.role_create(actor="bench", account=big.account, name="bench-patch", max_session_seconds=3600)
    mapping_ms = []
    for i in range(5):
        created: list = []

        def create(i=i, created=created):
            created.append(
                services.mapping_create(
                    actor="bench", name=f"patch-{i}", issuer=issuer, role=role, project=f"patch{i}/*"
                )
            )

        mapping_ms.append(timed(create))
        mapping_ms.append(timed(lambda m=created: services.registry_update(m[0], actor="bench", ref="release/*")))
        mapping_ms.append(timed(lambda m=created: services.registry_delete(m[0], actor="bench")))
    # Changes to the big role and its account, logged as the services log them, written without
    # their policy checks (which read all of the role's mappings).
    role_size = Mapping.objects.filter(role=big).count()

    def changed(model, pk: int, **fields) -> None:
        model.objects.filter(pk=pk).update(**fields)
        services.registry_changed(role_ids=[], changed=[(model, pk)])

    role_ms = [
        timed(lambda seconds=seconds: changed(Role, big.pk, max_session_seconds=seconds))
        for seconds in (7200, 3600, 7200, 3600, 7200)
    ]
    role_ms += [timed(lambda tags=tags: changed(Role, big.pk, session_tags=tags)) for tags in (False, True)]
    account_ms = [
        timed(lambda audience=audience: changed(Account, big.account_id, audience=audience))
        for audience in ("bench-audience", "sts.amazonaws.com", "bench-audience")
    ]

    def delete() -> None:
        Role.objects.filter(pk=big.pk).delete()
        services.registry_changed(role_ids=[], changed=[(Role, big.pk)])

    delete_ms = timed(delete)  # last: the role and its mappings are gone
    mapping_ms.sort()
    return {
        "patch_p50_ms": statistics.median(mapping_ms),
        "patch_max_ms": mapping_ms[-1],
        "patch_count": len(mapping_ms),
        "role_mappings": role_size,
        "role_patch_p50_ms": statistics.median(role_ms),
        "role_patch_max_ms": max(role_ms),
        "role_patch_count": len(role_ms),
        "account_patch_max_ms": max(account_ms),
        "role_delete_ms": delete_ms,
    }


def main() -> None:
    overall = time.monotonic()
    wrk = ensure_wrk()
    ensure_database()

    import django

    django.setup()
    from django.core.management import call_command

    from tests.conftest import load_claim_examples
    from tests.exchange import cases
    from tests.exchange.gitlab_stand_in import GitLabKey, StandInGitLab
    from tests.exchange.servers import RolegateServer
    from tests.services import free_port

    say(f"bench: load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    say(
        f"bench: database {BENCH_DATABASE_URL}, gunicorn {WORKERS} workers x {THREADS} threads"
        f" (portal.gunicorn_worker), CPUs {os.cpu_count()}"
    )
    call_command("migrate", verbosity=0)
    reset_data()
    stand_in = StandInGitLab(GitLabKey())
    server = None
    try:
        cases.build_registry(stand_in.url, actor="bench")
        add_mappings(10_000, prefix="bench")
        claims = load_claim_examples()["protected_main_push"]

        say("bench: floor (verify + sign + one INSERT, one process) ...")
        measure_floor(mint_tokens(stand_in, claims, 200))  # warm: JWKS, signing key, connection
        floors = [floor_now(stand_in, claims)]

        server = RolegateServer(port=free_port(), env=ENV, workers=WORKERS, threads=THREADS)
        server.wait_ready()
        warm = mint_tokens(stand_in, claims, WORKERS * 20)
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            run_level(wrk, server.url, warm, min(WORKERS, 16), cases.DEPLOY_WEB, workdir)
            rows = []
            for clients in LEVELS:
                expected = floors[-1]["rate"] * (0.8 if clients == 1 else 1.5)
                count = int(min(max(expected * SECONDS, 300), 20_000))
                tokens = mint_tokens(stand_in, claims, count)
                settle()
                result = run_level(wrk, server.url, tokens, clients, cases.DEPLOY_WEB, workdir)
                floors.append(floor_now(stand_in, claims))
                # Against the floor measured right before and right after this level: the shared
                # VM's speed drifts by a third within minutes, and both sides of a ratio should
                # see the same machine.
                result["floor_rate"] = (floors[-2]["rate"] + floors[-1]["rate"]) / 2
                rows.append((clients, result))
                say(
                    f"  {clients:>2} clients: {result['rate']:.0f} exchanges/s, p50 {result['p50_us'] / 1000:.2f} ms,"
                    f" p99 {result['p99_us'] / 1000:.2f} ms, errors {result['errors'] + result['socket_errors']},"
                    f" audit rows {result['audit_rows']} / requests {result['requests']}"
                )
        server.stop()
        server = None

        say("bench: matcher with 100,000 mappings ...")
        matcher = measure_matcher(100_000)
    finally:
        if server is not None:
            server.stop()
        stand_in.stop()

    say("")
    say(
        "| clients | exchanges/s | p50 ms | p99 ms | errors | audit rows = requests"
        " | floor /s (before and after) | Rolegate / floor |"
    )
    say("|---:|---:|---:|---:|---:|---|---:|---:|")
    for clients, r in rows:
        same = "yes" if r["audit_rows"] == r["requests"] else "NO"
        say(
            f"| {clients} | {r['rate']:.0f} | {r['p50_us'] / 1000:.2f} | {r['p99_us'] / 1000:.2f} |"
            f" {r['errors'] + r['socket_errors']} | {same} ({r['audit_rows']}/{r['requests']}) |"
            f" {r['floor_rate']:.0f} | {r['rate'] / r['floor_rate']:.2f} |"
        )
    floor = sorted(floors, key=lambda f: f["rate"])[len(floors) // 2]  # the median measurement
    say(
        f"| floor (1 process, median of {len(floors)}) | {floor['rate']:.0f} | {floor['p50_ms']:.2f} |"
        f" {floor['p99_ms']:.2f} | | | | 1.00 |"
    )
    say("")
    say(
        f"matcher: {matcher['mappings']} mappings ({matcher['candidates']} candidates checked),"
        f" decision p50 {matcher['p50_us']:.0f} us, p99"
        f" {matcher['p99_us']:.0f} us; full registry build {matcher['build_s']:.2f} s (a process's start, a bulk write)"
    )
    say(
        f"registry refresh after one change at {matcher['mappings']} mappings (change log + patch, once per process):"
        f" mapping change p50 {matcher['patch_p50_ms']:.1f} ms, max {matcher['patch_max_ms']:.1f} ms"
        f" ({matcher['patch_count']} changes); a change to a role with {matcher['role_mappings']} mappings"
        f" p50 {matcher['role_patch_p50_ms']:.1f} ms, max {matcher['role_patch_max_ms']:.1f} ms"
        f" ({matcher['role_patch_count']} changes), to its account max {matcher['account_patch_max_ms']:.1f} ms"
        f" (3 changes), its deletion {matcher['role_delete_ms']:.1f} ms"
    )
    say("")
    for clients, r in rows:
        say(f"ratio {clients} clients: {r['rate'] / r['floor_rate']:.2f}")
    sixteen = dict(rows).get(16)
    if sixteen:
        say(f"p99/p50 16 clients: {sixteen['p99_us'] / max(sixteen['p50_us'], 1):.2f}")
    say(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    say(f"bench: done in {time.monotonic() - overall:.0f} s")
    failed = any(r["audit_rows"] != r["requests"] or r["errors"] or r["socket_errors"] for _, r in rows)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
