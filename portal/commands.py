"""What every Rolegate management command shares: it ends with one line, whatever fails.

docs/commands.md "Conventions": a command exits 0 on success and non-zero with a one-line reason
on standard error otherwise. Django prints a ``CommandError`` as that one line, but anything else
-- a library's own exception such as botocore's ``ResponseParserError``, a database that went
away -- would print a traceback. :class:`RolegateCommand` turns such a failure into a
``CommandError`` naming the exception's type and the first line of its message (``--traceback``
still shows the whole traceback). Failures a command expects are still its own to word.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

MAX_REASON_CHARS = 300


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, at most :data:`MAX_REASON_CHARS` characters."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


class RolegateCommand(BaseCommand):
    """A management command that ends with one line of reason, whatever it raises."""

    def execute(self, *args, **options):
        try:
            return super().execute(*args, **options)
        except CommandError:
            raise
        except Exception as exc:
            if options.get("traceback"):
                raise
            raise CommandError(f"failed: {one_line(exc)}") from exc
