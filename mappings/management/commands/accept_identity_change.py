"""``manage.py accept_identity_change PATH NEW_ID --note TEXT [--namespace] [--issuer NAME]``:
move the identity pin of PATH to the GitLab id NEW_ID, recording who, when, the old and new
ids and why (docs/commands.md#accept_identity_change)."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import CommandError, CommandParser

from mappings import pins
from mappings.models import IdentityPin
from portal.commands import RolegateCommand


class Command(RolegateCommand):
    help = "Accept a legitimate identity change: pin PATH to the GitLab id NEW_ID (recorded with your note)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", metavar="PATH", help="The project path (or, with --namespace, the namespace path).")
        parser.add_argument("new_id", metavar="NEW_ID", help="The project_id (namespace_id) now at PATH, digits.")
        parser.add_argument("--note", required=True, help="Why the change is legitimate (recorded).")
        parser.add_argument(
            "--namespace", action="store_true", help="PATH is a namespace path (namespace_path -> namespace_id)."
        )
        parser.add_argument("--issuer", metavar="NAME", help="The issuer, when PATH is pinned for several.")

    def handle(
        self, *args: Any, path: str, new_id: str, note: str, namespace: bool, issuer: str | None, **options: Any
    ) -> None:
        kind = IdentityPin.Kind.NAMESPACE if namespace else IdentityPin.Kind.PROJECT
        if issuer is None:
            issuers = sorted(IdentityPin.objects.filter(kind=kind, path=path).values_list("issuer__name", flat=True))
            if len(issuers) > 1:
                names = ", ".join(issuers)
                raise CommandError(f"{kind} {path!r} is pinned for issuers {names}; name one with --issuer.")
            if not issuers:
                raise CommandError(f"No {kind} {path!r} is pinned (a pin exists once a pinning mapping granted it).")
            issuer = issuers[0]
        try:
            change = pins.identity_change_accept(
                issuer=issuer,
                kind=kind,
                path=path,
                new_id=new_id,
                actor=f"{getpass.getuser()} (accept_identity_change)",
                note=note,
            )
        except pins.IdentityChangeRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"{change.kind} {change.path} of issuer {change.issuer_name}: pinned to {change.new_id} "
            f"(was {change.old_id}); identity change {change.pk} recorded by {change.actor}"
        )
