"""``python manage.py export``: the registry as configuration YAML (docs/commands.md#export) on standard output."""

from __future__ import annotations

from typing import Any

from mappings.config import export_document
from portal.commands import RolegateCommand


class Command(RolegateCommand):
    help = "Print every issuer, account, role and mapping as a configuration file (re-applies as a no-op)."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(export_document(), ending="")
