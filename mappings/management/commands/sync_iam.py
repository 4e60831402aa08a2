"""``manage.py sync_iam [--account NAME] [--check]`` (docs/commands.md#sync_iam).

Requests the worker's own ``sync_account`` task for each account through
``mappings.iam.scheduling.sync_request`` — on the workers when a broker is set (waiting for each
result), in this process otherwise — and prints one line per OIDC provider and role, then a
one-line summary. ``--check`` writes nothing, prints a unified diff for every
role whose live trust policy differs, and exits 1 if any does.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeoutError
from django.core.management.base import CommandError, CommandParser

from mappings.iam import outcomes, retired, scheduling, selectors
from mappings.iam.outcomes import SyncLine
from mappings.models import Account
from portal.commands import RolegateCommand


class Command(RolegateCommand):
    help = "Bring every managed account's OIDC provider and role trust policies in line with the mappings."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", metavar="NAME", help="Only this account.")
        parser.add_argument(
            "--check", action="store_true", help="Change nothing; print a diff per drifted role; exit 1 if any."
        )
        parser.add_argument(
            "--timeout",
            type=int,
            default=600,
            metavar="SECONDS",
            help="With a broker: how long to wait for a worker to sync one account (default 600).",
        )

    def handle(
        self, *args: Any, account: str | None = None, check: bool = False, timeout: int = 600, **options: Any
    ) -> None:
        accounts = Account.objects.order_by("name")
        if account is not None:
            accounts = accounts.filter(name=account)
            if not accounts.exists():
                raise CommandError(f"No account is named {account!r}.")
        counts: Counter[str] = Counter()
        # The task runs in this process and this command prints its outcome, line by line: the
        # worker's own log lines (celery's trace, the sync's failure warnings) would repeat them on
        # standard error, where docs/commands.md#conventions promises one line of reason.
        logging.getLogger("celery.app.trace").setLevel(logging.ERROR)
        logging.getLogger("mappings.iam.services").setLevel(logging.ERROR)
        logging.getLogger("console.alerts.services").setLevel(logging.ERROR)  # alerts evaluated after the sync
        for item in accounts:
            try:
                lines = scheduling.sync_request(item, dry_run=check, wait=True, timeout=timeout)
            except CeleryTimeoutError:
                raise CommandError(
                    f"No worker synced account {item.name!r} within {timeout} s; is `celery -A portal worker` "
                    "running on this broker?"
                ) from None
            self._print(lines, counts)
        if account is None:
            # Roles retired from accounts Rolegate no longer manages at all.
            lines, _ = retired.retired_roles_sync(account_ids=selectors.orphan_account_ids(), dry_run=check)
            self._print(lines, counts)
        summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items())) or "nothing to sync"
        self.stdout.write(f"{'checked' if check else 'synced'} {sum(counts.values())}: {summary}")
        if counts[outcomes.FAILED]:
            raise CommandError(f"{counts[outcomes.FAILED]} provider(s)/role(s) failed; see the lines above.")
        if check and counts[outcomes.DIFFERS]:
            raise CommandError(f"{counts[outcomes.DIFFERS]} provider(s)/role(s) differ from the mappings.")

    def _print(self, lines: list[SyncLine], counts: Counter[str]) -> None:
        for line in lines:
            counts[line.outcome] += 1
            self.stdout.write(line.text())
            if line.diff:
                self.stdout.write(line.diff.rstrip("\n"))
