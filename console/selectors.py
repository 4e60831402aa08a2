"""Reads of the platform console: audit event queries."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from exchange.models import AuditEvent
from mappings.claims import AUDIT_FILTERS

# Exact-match filters of the audit API, named after the audit event's fields (docs/api.md).
AUDIT_EXACT_FILTERS = ("outcome", "reason", "issuer", "role_arn", "mapping", *AUDIT_FILTERS, "request_id")


def audit_event_list(
    *, filters: dict[str, str] | None = None, since: datetime | None = None, until: datetime | None = None
) -> QuerySet[AuditEvent]:
    """Audit events, newest first, narrowed by exact field values and a half-open time range."""
    qs = AuditEvent.objects.all()
    for name, value in (filters or {}).items():
        if name not in AUDIT_EXACT_FILTERS:
            raise ValueError(f"not an audit filter: {name}")
        qs = qs.filter(**{name: value})
    if since is not None:
        qs = qs.filter(time__gte=since)
    if until is not None:
        qs = qs.filter(time__lt=until)
    return qs.order_by("-time", "-id")
