"""``python manage.py apply FILE [--dry-run] [--prune] [--strict] [--detailed-exitcode] [--format text|json]``.

Documented in docs/commands.md#apply and docs/configuration.md. Exit codes: 0 done (or, with
``--detailed-exitcode``, done and nothing to change), 1 errors (nothing changed), 2 with
``--detailed-exitcode`` when the plan has changes — Terraform's ``plan -detailed-exitcode``
convention, so a configuration repository's CI can tell "up to date" from "needs an apply".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import IntegrityError

from mappings.config import ConfigError, apply_document, parse_document
from portal.commands import RolegateCommand

EXIT_CHANGES = 2


class Command(RolegateCommand):
    help = "Reconcile the registry with a configuration file; prints the plan object by object."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the YAML configuration file ('-' for standard input)")
        parser.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
        parser.add_argument("--prune", action="store_true", help="delete objects the file does not list")
        parser.add_argument(
            "--strict", action="store_true", help="treat lint warnings as errors (nothing is changed if any)"
        )
        parser.add_argument(
            "--detailed-exitcode",
            action="store_true",
            help="exit 0 when nothing changes, 2 when the plan has changes, 1 on errors",
        )
        parser.add_argument(
            "--format",
            dest="output_format",
            choices=("text", "json"),
            default="text",
            help="json: print the plan (changes, policy sizes, warnings, errors) as one JSON object",
        )

    def handle(
        self,
        *args: Any,
        file: str,
        dry_run: bool,
        prune: bool,
        strict: bool,
        detailed_exitcode: bool,
        output_format: str,
        **options: Any,
    ) -> None:
        as_json = output_format == "json"
        text = self._read(file)
        try:
            document = parse_document(text)
            plan = apply_document(document, prune=prune, actor=f"apply {file}", dry_run=dry_run, strict=strict)
        except ConfigError as exc:
            count = len(exc.errors)
            if as_json:
                errors = [{"path": path, "message": message} for path, message in exc.errors]
                self.stdout.write(json.dumps({"applied": False, "dry_run": dry_run, "errors": errors}, indent=2))
            else:
                for path, message in exc.errors:
                    self.stderr.write(f"{path}: {message}")
            raise CommandError(f"{file}: {count} error{'s' if count != 1 else ''}; nothing was changed") from None
        except IntegrityError as exc:
            raise CommandError(
                f"{file}: a concurrent change conflicted ({exc}); nothing was changed, try again"
            ) from None
        if as_json:
            body = {"applied": not dry_run and not plan.empty, "dry_run": dry_run, **plan.as_dict(), "errors": []}
            self.stdout.write(json.dumps(body, indent=2))
        else:
            for line in plan.lines():
                self.stdout.write(line)
            if dry_run:
                self.stdout.write("Dry run: nothing was changed.")
            elif not plan.empty:
                self.stdout.write("Applied.")
        if detailed_exitcode and not plan.empty:
            self.stdout.flush()
            sys.exit(EXIT_CHANGES)

    def _read(self, file: str) -> str:
        if file == "-":
            return sys.stdin.read()
        try:
            return Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"{file}: cannot be read: {exc}") from None
