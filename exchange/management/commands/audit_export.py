"""``python manage.py audit_export [--since ISO] [--format jsonl|csv]``: audit events, oldest first."""

from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils.dateparse import parse_datetime
from django.utils.timezone import is_naive, make_aware

from exchange.audit import write_csv, write_jsonl
from exchange.models import AuditEvent
from portal.commands import RolegateCommand


class Command(RolegateCommand):
    help = "Print audit events (docs/api.md#audit-event-fields), oldest first, as JSON lines or CSV."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", help="Only events at or after this ISO 8601 time (UTC when no offset).")
        parser.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")

    def handle(self, *args: Any, since: str | None = None, format: str = "jsonl", **options: Any) -> None:
        events = AuditEvent.objects.order_by("time", "id")
        if since:
            moment = parse_datetime(since.replace("Z", "+00:00"))
            if moment is None:
                raise CommandError(f"--since {since!r} is not an ISO 8601 date-time")
            if is_naive(moment):
                moment = make_aware(moment)
            events = events.filter(time__gte=moment)
        writer = write_csv if format == "csv" else write_jsonl
        writer(events.iterator(chunk_size=2000), self.stdout)
