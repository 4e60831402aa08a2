"""``manage.py revoke_sessions ROLE [--before TIME] [--reason TEXT]``: deny everything to the
role's live sessions issued before TIME (default: now).

Records a :class:`~mappings.models.SessionRevocation` and runs the role's sync through
``mappings.iam.scheduling.sync_request`` (on a worker when a broker is set, waiting for it; in
this process otherwise), which writes AWS's revoke-older-sessions inline policy
(``RolegateRevokeOlderSessions``) on the role. The cut-off in IAM only moves forward: a TIME
before the one already there changes nothing in IAM (it is still recorded).
"""

from __future__ import annotations

import getpass
import logging
from datetime import datetime
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeoutError
from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from mappings.iam import outcomes, revocations, scheduling
from mappings.models import Role
from portal.commands import RolegateCommand


def parse_time(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"--before {value!r} is not an ISO 8601 time such as 2026-11-26T12:00:00Z.") from None
    if moment.tzinfo is None:
        raise CommandError(f"--before {value!r} needs a time zone (for example 2026-11-26T12:00:00Z).")
    return moment


class Command(RolegateCommand):
    help = "Revoke a role's live sessions issued before a moment (default: now), with an inline deny policy."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("role", metavar="ROLE", help="<account>/<role name>, e.g. prod/deploy-web.")
        parser.add_argument("--before", metavar="TIME", help="ISO 8601 cut-off with a time zone (default: now).")
        parser.add_argument("--reason", default="revoke_sessions command", help="Why, for the record.")
        parser.add_argument(
            "--timeout", type=int, default=600, metavar="SECONDS", help="With a broker: how long to wait."
        )

    def handle(self, *args: Any, role: str, before: str | None, reason: str, timeout: int, **options: Any) -> None:
        account_name, _, role_name = role.partition("/")
        target = Role.objects.select_related("account").filter(account__name=account_name, name=role_name).first()
        if target is None:
            raise CommandError(f"No role {role!r}; give it as <account>/<role name>, e.g. prod/deploy-web.")
        cutoff = parse_time(before) if before else timezone.now()
        if cutoff > timezone.now():
            raise CommandError("--before is in the future; a session cannot be revoked before it is issued.")
        revocations.session_revoke(
            role=target, actor=f"{getpass.getuser()} (revoke_sessions)", reason=reason, cutoff=cutoff
        )
        logging.getLogger("celery.app.trace").setLevel(logging.ERROR)
        logging.getLogger("mappings.iam.services").setLevel(logging.ERROR)
        try:
            lines = scheduling.sync_request(target, wait=True, timeout=timeout)
        except CeleryTimeoutError:
            raise CommandError(
                f"No worker synced role {role!r} within {timeout} s; the revocation is recorded and the next "
                "sync writes it."
            ) from None
        for line in lines:
            self.stdout.write(line.text())
        target.refresh_from_db()
        if target.sessions_revoked_before is None or target.sessions_revoked_before < cutoff.replace(microsecond=0):
            failed = "; ".join(line.text() for line in lines if line.outcome == outcomes.FAILED)
            raise CommandError(f"The revocation is recorded but not in IAM yet: {failed or 'see the lines above'}.")
        self.stdout.write(
            f"role {role}: sessions issued before {target.sessions_revoked_before:%Y-%m-%dT%H:%M:%SZ} are denied"
        )
