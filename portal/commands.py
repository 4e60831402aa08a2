"""What every Rolegate management command shares: it ends with one line, whatever fails.

docs/commands.md "Conventions": a command exits 0 on success and non-zero with a one-line reason
on standard error otherwise. Django prints a ``CommandError`` as that one line, but anything else
-- a library's own exception such as botocore's ``ResponseParserError``, a database that went
away -- would print a traceback. :class:`RolegateCommand` turns such a failure into a
``CommandError`` naming the exception's type and the first line of its message (``--traceback``
still shows the whole traceback). Failures a command expects are still its own to word. A usage
mistake (an unknown option, a missing argument, a value not among the choices) is one line too,
``CommandError: <argparse's message>; see manage.py <command> --help``, exit status 2, instead of
argparse's usage screen.
"""

from __future__ import annotations

from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandError, CommandParser

MAX_REASON_CHARS = 300


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, at most :data:`MAX_REASON_CHARS` characters."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


class OneLineParser(CommandParser):
    """Django's parser, whose usage errors on the command line are one line on standard error."""

    def error(self, message: str) -> NoReturn:
        if not self.called_from_command_line:
            super().error(message)  # raises CommandError, as Django does for call_command()
        first = message.strip().splitlines()[0] if message.strip() else "bad arguments"
        self.exit(2, f"CommandError: {first}; see {self.prog} --help\n")


class RolegateCommand(BaseCommand):
    """A management command that ends with one line of reason, whatever it raises."""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.__class__ = OneLineParser  # same state, one-line error()
        return parser

    def execute(self, *args, **options):
        try:
            return super().execute(*args, **options)
        except CommandError:
            raise
        except Exception as exc:
            if options.get("traceback"):
                raise
            raise CommandError(f"failed: {one_line(exc)}") from exc
