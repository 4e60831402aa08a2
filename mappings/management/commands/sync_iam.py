"""``manage.py sync_iam [--account NAME] [--check]`` (docs/commands.md#sync_iam).

Runs the worker's own ``sync_account`` task for each account — on the workers when a broker is
set (waiting for each result), in this process otherwise — and prints one line per OIDC provider
and role, then a one-line summary. ``--check`` writes nothing, prints a unified diff for every
role whose live trust policy differs, and exits 1 if any does.
"""

from __future__ import annotations

import logging
from collections import Counter

from celery.exceptions import Retry
from celery.exceptions import TimeoutError as CeleryTimeoutError
from django.core.management.base import BaseCommand, CommandError

from mappings import retired, sync
from mappings.aws_iam import AwsError
from mappings.models import Account
from mappings.tasks import sync_account


class Command(BaseCommand):
    help = "Bring every managed account's OIDC provider and role trust policies in line with the mappings."

    def add_arguments(self, parser):
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

    def handle(self, *args, account: str | None = None, check: bool = False, timeout: int = 600, **options):
        accounts = Account.objects.order_by("name")
        if account is not None:
            accounts = accounts.filter(name=account)
            if not accounts.exists():
                raise CommandError(f"No account is named {account!r}.")
        outcomes: Counter[str] = Counter()
        # The task runs in this process and this command prints its outcome, line by line: the
        # worker's own log lines (celery's trace, the sync's failure warnings) would repeat them on
        # standard error, where docs/commands.md#conventions promises one line of reason.
        logging.getLogger("celery.app.trace").setLevel(logging.ERROR)
        logging.getLogger("mappings.sync").setLevel(logging.ERROR)
        for item in accounts:
            try:
                lines = self._sync_account(item, check=check, timeout=timeout)
            except CeleryTimeoutError:
                raise CommandError(
                    f"No worker synced account {item.name!r} within {timeout} s; is `celery -A portal worker` "
                    "running on this broker?"
                ) from None
            except (AwsError, Retry) as exc:
                reason = getattr(exc, "exc", None) or exc
                lines = [sync.SyncLine(f"account {item.name}", sync.FAILED, f"{reason}").as_dict()]
            self._print([sync.SyncLine(**line) for line in lines], outcomes)
        if account is None:
            # Roles retired from accounts Rolegate no longer manages at all.
            lines, _ = retired.retired_roles_sync(account_ids=retired.orphan_account_ids(), dry_run=check)
            self._print(lines, outcomes)
        summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items())) or "nothing to sync"
        self.stdout.write(f"{'checked' if check else 'synced'} {sum(outcomes.values())}: {summary}")
        if outcomes[sync.FAILED]:
            raise CommandError(f"{outcomes[sync.FAILED]} provider(s)/role(s) failed; see the lines above.")
        if check and outcomes[sync.DIFFERS]:
            raise CommandError(f"{outcomes[sync.DIFFERS]} provider(s)/role(s) differ from the mappings.")

    @staticmethod
    def _sync_account(account: Account, *, check: bool, timeout: int) -> list[dict]:
        kwargs = {"account_id": account.pk, "dry_run": check}
        if sync.broker_configured():
            return sync_account.apply_async(kwargs=kwargs, ignore_result=False).get(timeout=timeout)
        return sync_account.apply(kwargs=kwargs, throw=True).get()

    def _print(self, lines: list[sync.SyncLine], outcomes: Counter[str]) -> None:
        for line in lines:
            outcomes[line.outcome] += 1
            self.stdout.write(line.text())
            if line.diff:
                self.stdout.write(line.diff.rstrip("\n"))
