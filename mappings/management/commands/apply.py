"""``python manage.py apply FILE [--dry-run] [--prune]`` (docs/commands.md#apply)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from mappings.config import ConfigError, apply_document, compute_plan, parse_document


class Command(BaseCommand):
    help = "Reconcile the registry with a configuration file; prints the plan object by object."

    def add_arguments(self, parser):
        parser.add_argument("file", help="the YAML configuration file ('-' for standard input)")
        parser.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
        parser.add_argument("--prune", action="store_true", help="delete objects the file does not list")

    def handle(self, *args, file: str, dry_run: bool, prune: bool, **options):
        text = self._read(file)
        try:
            document = parse_document(text)
            if dry_run:
                plan = compute_plan(document, prune=prune)
            else:
                plan = apply_document(document, prune=prune, actor=f"apply {file}")
        except ConfigError as exc:
            for path, message in exc.errors:
                self.stderr.write(f"{path}: {message}")
            count = len(exc.errors)
            raise CommandError(f"{file}: {count} error{'s' if count != 1 else ''}; nothing was changed") from None
        except IntegrityError as exc:
            raise CommandError(
                f"{file}: a concurrent change conflicted ({exc}); nothing was changed, try again"
            ) from None
        for line in plan.lines():
            self.stdout.write(line)
        if dry_run:
            self.stdout.write("Dry run: nothing was changed.")
        elif not plan.empty:
            self.stdout.write("Applied.")

    def _read(self, file: str) -> str:
        if file == "-":
            import sys

            return sys.stdin.read()
        try:
            return Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"{file}: cannot be read: {exc}") from None
