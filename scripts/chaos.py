#!/usr/bin/env python
"""``make chaos``: fault injection against Rolegate under gunicorn, and the figures.

For each scenario (PostgreSQL restarted, Redis stopped, the Celery broker stopped, STS slow and
unreachable, GitLab's JWKS slow and unreachable) it runs exchange load on 127.0.0.1, takes the
dependency away, gives it back, and prints one table row: requests sent, answers by status, 500s
(must be 0), grants without an audit event (must be 0), seconds to recover. Every service is our
own (a throwaway PostgreSQL cluster, our own redis-server, moto, TCP proxies), never a shared one.
Exits 1 when a 500 or an unaudited grant was seen. ``CHAOS_SECONDS`` (default 8) is how long
each fault lasts; ``CHAOS_SCENARIOS`` (comma-separated, default all) picks scenarios.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

from tests.chaos.harness import HEADER, SCENARIOS, Stack, Timing  # noqa: E402


def main() -> int:
    seconds = float(os.environ.get("CHAOS_SECONDS", "8"))
    names = [n for n in os.environ.get("CHAOS_SCENARIOS", ",".join(SCENARIOS)).split(",") if n]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        sys.exit(f"chaos: unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    timing = Timing(before=3.0, fault=seconds, after=max(6.0, seconds))
    print(f"chaos: {len(names)} scenario(s), faults of {seconds:g} s; starting the stack", flush=True)
    stack = Stack()
    rows = []
    try:
        for name in names:
            print(f"chaos: {name} ...", flush=True)
            rows.append(SCENARIOS[name](stack, timing))
    finally:
        stack.close()
    print()
    print(HEADER)
    for figures in rows:
        print(figures.row())
    bad = [f.scenario for f in rows if f.server_errors or f.unaudited_grants]
    if bad:
        print(f"\nchaos: 500s or unaudited grants in: {', '.join(bad)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
