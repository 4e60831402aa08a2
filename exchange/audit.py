"""The audit trail of the exchange (CONTRACT §7): how events are exported.

Exports and APIs name the fields as the contract does, in this order.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import IO

from exchange.models import AuditEvent

# The public shape of an audit event: exports, the audit API and the admin's downloads.
AUDIT_FIELDS = (
    "time",
    "request_id",
    "endpoint",
    "outcome",
    "reason",
    "detail",
    "client_ip",
    "issuer",
    "iss",
    "jti",
    "sub",
    "project_path",
    "project_id",
    "namespace_path",
    "ref",
    "ref_type",
    "ref_protected",
    "environment",
    "pipeline_source",
    "pipeline_id",
    "job_id",
    "user_login",
    "requested_role_arn",
    "role_arn",
    "mapping",
    "minted_jti",
    "role_session_name",
    "latency_ms",
)


def audit_event_as_dict(event: AuditEvent) -> dict:
    data = {name: getattr(event, name) for name in AUDIT_FIELDS}
    data["time"] = event.time.isoformat().replace("+00:00", "Z")
    return data


def write_jsonl(events: Iterable[AuditEvent], stream: IO[str]) -> int:
    count = 0
    for event in events:
        stream.write(json.dumps(audit_event_as_dict(event), separators=(",", ":")) + "\n")
        count += 1
    return count


def _csv_cell(value: object) -> object:
    """Neutralise spreadsheet formulas: claims of a refused token are attacker-chosen text."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def write_csv(events: Iterable[AuditEvent], stream: IO[str]) -> int:
    writer = csv.DictWriter(stream, fieldnames=AUDIT_FIELDS, extrasaction="raise")
    writer.writeheader()
    count = 0
    for event in events:
        row = audit_event_as_dict(event)
        writer.writerow({key: _csv_cell(value) for key, value in row.items()})
        count += 1
    return count
