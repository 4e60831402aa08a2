"""The audit trail of the exchange (docs/api.md#audit-trail): how events are written and exported.

:func:`audit_record` is the one way an event is written: exactly one per request to the
exchange, before the response. Exports and APIs name the fields as the contract does, in this
order. Never a raw token, signature or credential: claims, ``jti`` and ids only.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import logging
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Protocol, TypeVar

from django.conf import settings
from django.db import IntegrityError, connection, models, transaction
from django.db.models import F
from django.utils import timezone

from exchange.models import AuditEvent, UsedToken
from exchange.safe_text import csv_cell
from mappings.claims import AUDITED
from mappings.selectors import RegistryAt, RegistryMoved, registry_guard, registry_still_at
from portal import metrics
from portal.postgresql.overlap import execute_meanwhile


class TextSink(Protocol):
    """Where an export writes: a text file, a buffer, a management command's ``self.stdout``."""

    def write(self, text: str, /) -> object: ...


Answer = TypeVar("Answer")

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
    *AUDITED,  # the claims of the subject token: iss, jti, sub, project_path, ...
    "requested_role_arn",
    "role_arn",
    "mapping",
    "minted_jti",
    "role_session_name",
    "latency_ms",
    "token_verified",
    "count",  # 1, or how many requests an aggregate event counts
)

# ROLEGATE_AUDIT_LOG: each stored event, once committed, as one line here (docs/operations.md "Logs").
audit_logger = logging.getLogger("rolegate.audit")
_MAX_LENGTHS = {f.name: f.max_length for f in AuditEvent._meta.fields if f.max_length}


def _fit(name: str, value: object) -> str | None:
    """A value as stored: text, cut to the column; ``None`` for absent. Claims of unverified
    tokens are attacker-chosen, so anything is accepted and nothing fails the write."""
    if value is None:
        return None
    if not isinstance(value, str):
        value = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
    # NULs (PostgreSQL text cannot hold them) and lone surrogates ("\ud800" in a token's JSON;
    # not UTF-8) cannot be stored: written as the escapes \x00 and \ud800, never a failed write.
    value = value.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    limit = _MAX_LENGTHS.get(name)
    return value[:limit] if limit else value


def audit_event(
    *,
    request_id: str,
    endpoint: str,
    outcome: str,
    reason: str,
    detail: str,
    client_ip: str | None = None,
    user_agent: str = "",
    issuer: str | None = None,
    claims: dict[str, Any] | None = None,
    token_verified: bool = False,
    requested_role_arn: str | None = None,
    role_arn: str | None = None,
    mapping: str | None = None,
    minted_jti: str | None = None,
    role_session_name: str | None = None,
    latency_ms: float | None = None,
    time: datetime | None = None,
    aggregate_key: str | None = None,
) -> AuditEvent:
    """The event as it will be stored (not saved): every text fitted to its column."""
    claims = claims if isinstance(claims, dict) else {}
    fields = {name: _fit(name, claims.get(name)) for name in AUDITED}
    return AuditEvent(
        time=time or timezone.now(),
        request_id=request_id,
        endpoint=endpoint,
        outcome=outcome,
        reason=reason,
        detail=_fit("detail", detail) or "",
        client_ip=client_ip,
        user_agent=_fit("user_agent", user_agent) or "",
        issuer=_fit("issuer", issuer),
        requested_role_arn=_fit("requested_role_arn", requested_role_arn),
        role_arn=role_arn,
        mapping=mapping,
        minted_jti=minted_jti,
        role_session_name=role_session_name,
        latency_ms=latency_ms,
        token_verified=token_verified,
        aggregate_key=aggregate_key,
        **fields,
    )


def audit_record(**fields: Any) -> AuditEvent:
    """Write one audit event (the arguments of :func:`audit_event`). Raises the database's error
    if it cannot be written: callers fail the request (fail closed)."""
    event = audit_event(**fields)
    event.save(force_insert=True)
    _log_after_commit(event)
    return event


def audit_record_spending(
    *, used: UsedToken, registry_at: RegistryAt | None, meanwhile: Callable[[], Answer], **fields: Any
) -> tuple[AuditEvent | None, Answer]:
    """Spend a subject token (its replay row ``used``) and write the granted event, all or
    nothing, only if the registry is still at ``registry_at`` -- the snapshot the grant was
    decided on (``None``: whatever it is now); and call ``meanwhile()`` (the answer: signing the
    minted token), which needs neither row. Returns the event, ``None`` (and nothing written)
    when the token was already spent for that role, with what ``meanwhile`` returned; raises
    :class:`~mappings.selectors.RegistryMoved` (and nothing written) when the registry moved.

    On PostgreSQL this is ONE statement in autocommit::

        WITH fresh AS (SELECT 1 FROM registry WHERE id = 1 AND version = %s AND stamp = %s),
             used AS (INSERT ... SELECT ... FROM fresh ON CONFLICT DO NOTHING RETURNING 1),
             event AS (INSERT INTO audit ... SELECT ... FROM used RETURNING id)
        SELECT EXISTS (SELECT 1 FROM fresh), (SELECT id FROM event)

    so the hot path pays one round trip for the check and both rows, no BEGIN/COMMIT, and the
    statement is atomic: the event exists exactly when the replay row does, and neither unless
    the registry was still at ``registry_at`` (as of the statement's snapshot). ``meanwhile``
    runs while the server works on it (:func:`portal.postgresql.overlap.execute_meanwhile`), so
    the signature and the round trip overlap. A concurrent request with the same token waits on
    the unique index and finds the row (replay refused across processes). Other databases call
    ``meanwhile`` first, then use a transaction and check first. Raises the database's error if
    it cannot write (fail closed): the caller hands nothing out."""
    event = audit_event(**fields)
    if connection.vendor != "postgresql":
        answer = meanwhile()
        with transaction.atomic():
            registry_still_at(registry_at)
            try:
                with transaction.atomic():
                    used.save(force_insert=True)
            except IntegrityError:
                return None, answer
            event.save(force_insert=True)
    else:
        statement, params = _spend_and_record_sql(used, event, registry_at)
        with _one_statement():
            [(fresh, pk)], answer = execute_meanwhile(connection, statement, params, meanwhile)
        if not fresh:
            raise RegistryMoved
        if pk is None:
            return None, answer
        event.pk = pk
    _log_after_commit(event)
    return event, answer


def _one_statement() -> contextlib.AbstractContextManager[Any]:
    """Around one statement that may fail (a unique index): nothing in autocommit, where the
    statement is its own transaction (no BEGIN/COMMIT round trips); a savepoint inside a caller's
    transaction (tests, a shell), which the failure would otherwise poison."""
    return transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()


@functools.cache
def _columns(model: type[models.Model]) -> tuple[models.Field[Any, Any], ...]:
    """The model's columns but its primary key, in order (read once per process: every granted
    exchange builds its statement's parameters from them)."""
    return tuple(f for f in model._meta.concrete_fields if not f.primary_key)


def _column(field: object) -> str:
    """A concrete field's column name."""
    column = getattr(field, "column", None)
    if not isinstance(column, str):
        raise TypeError(f"{field!r} has no column")
    return column


def _cast(field: models.Field[Any, Any]) -> str:
    """The column's base type (no length), so a text parameter is read as the column's type."""
    return re.sub(r"\(.*\)", "", field.db_type(connection) or "text")


@functools.cache
def _spend_and_record_statement(guard: str) -> str:
    """Built once per guard from the models' metadata (names only; every value is a parameter)."""
    quote = connection.ops.quote_name
    used_fields, event_fields = _columns(UsedToken), _columns(AuditEvent)
    unique = ", ".join(quote(_column(UsedToken._meta.get_field(name))) for name in ("issuer", "jti", "role_arn"))
    pk = quote(_column(AuditEvent._meta.pk))
    # Table and column names from the models, the guard from mappings.selectors.registry_guard
    # (names only too); every value is a parameter.
    return (
        f"WITH fresh AS ({guard}), "  # noqa: S608
        f"used AS (INSERT INTO {quote(UsedToken._meta.db_table)} "
        f"({', '.join(quote(_column(f)) for f in used_fields)}) "
        f"SELECT {', '.join(f'%s::{_cast(f)}' for f in used_fields)} FROM fresh "
        f"ON CONFLICT ({unique}) DO NOTHING RETURNING 1), "
        f"event AS (INSERT INTO {quote(AuditEvent._meta.db_table)} "
        f"({', '.join(quote(_column(f)) for f in event_fields)}) "
        f"SELECT {', '.join(f'%s::{_cast(f)}' for f in event_fields)} FROM used "
        f"RETURNING {pk}) "
        f"SELECT EXISTS (SELECT 1 FROM fresh), (SELECT {pk} FROM event)"
    )


def _spend_and_record_sql(used: UsedToken, event: AuditEvent, registry_at: RegistryAt | None) -> tuple[str, list[Any]]:
    guard, params = ("SELECT 1", []) if registry_at is None else registry_guard(registry_at)
    params += [f.get_db_prep_save(getattr(used, f.attname), connection) for f in _columns(UsedToken)]
    params += [f.get_db_prep_save(getattr(event, f.attname), connection) for f in _columns(AuditEvent)]
    return _spend_and_record_statement(guard), params


def _log_after_commit(event: AuditEvent) -> None:
    # Once the row is committed (a rolled-back event, a 503, was never recorded): logged from the
    # stored row (the same fields, cut the same way, as the audit API and exports; never a token)
    # and counted in the metrics. In autocommit (the token endpoint's one statement): at once.
    transaction.on_commit(lambda: _audit_committed(event), robust=True)


def audit_count_refusal(
    *,
    client: str,
    request_id: str,
    endpoint: str,
    reason: str,
    detail: str,
    client_ip: str | None,
    user_agent: str = "",
    latency_ms: float | None = None,
) -> AuditEvent | None:
    """Record a request refused before a subject token was read (rate limited, wrong method,
    unreadable body) in the aggregate event of its ``client`` (the rate limit's bucket),
    endpoint, reason and minute: the first such request writes the event (its request id,
    address and sentence), the others add one to its ``count`` (docs/api.md#audit-trail). So one
    client causes at most one row per endpoint and reason a minute, whatever it sends. Raises
    the database's error if it cannot be written: callers fail the request (fail closed)."""
    now = timezone.now()
    key = f"{client}|{endpoint}|{reason}|{now:%Y-%m-%dT%H:%M}"
    if not _add_one(key):
        try:
            with _one_statement():
                return audit_record(
                    request_id=request_id,
                    endpoint=endpoint,
                    outcome=AuditEvent.Outcome.DENIED,
                    reason=reason,
                    detail=detail,
                    client_ip=client_ip,
                    user_agent=user_agent,
                    latency_ms=latency_ms,
                    time=now,
                    aggregate_key=key,
                )
        except IntegrityError:  # another process wrote it first
            if not _add_one(key):
                raise
    transaction.on_commit(
        lambda: metrics.exchange_observed(endpoint=endpoint, outcome="denied", reason=reason, latency_ms=latency_ms),
        robust=True,
    )
    return None


def _add_one(key: str) -> bool:
    return AuditEvent.objects.filter(aggregate_key=key).update(count=F("count") + 1) == 1


def _audit_committed(event: AuditEvent) -> None:
    if settings.ROLEGATE_AUDIT_LOG:
        _audit_log(event)
    metrics.exchange_observed(
        endpoint=event.endpoint, outcome=event.outcome, reason=event.reason, latency_ms=event.latency_ms
    )


def _audit_log(event: AuditEvent) -> None:
    audit_logger.info(
        "audit %s %s %s %s",
        event.endpoint,
        event.outcome,
        event.reason,
        event.request_id,
        extra={"request_id": event.request_id, "audit": audit_event_as_dict(event)},
    )


def audit_event_as_dict(event: AuditEvent) -> dict[str, Any]:
    data = {name: getattr(event, name) for name in AUDIT_FIELDS}
    data["time"] = event.time.isoformat().replace("+00:00", "Z")
    return data


def write_jsonl(events: Iterable[AuditEvent], stream: TextSink) -> int:
    count = 0
    for event in events:
        stream.write(json.dumps(audit_event_as_dict(event), separators=(",", ":")) + "\n")
        count += 1
    return count


def write_csv(events: Iterable[AuditEvent], stream: TextSink) -> int:
    """Events as CSV for spreadsheets: every cell quoted, controls escaped, formulas neutralised
    (:func:`exchange.safe_text.csv_cell`); JSON lines keep the text exact (JSON escapes controls)."""
    writer = csv.DictWriter(stream, fieldnames=AUDIT_FIELDS, extrasaction="raise", quoting=csv.QUOTE_ALL)
    writer.writeheader()
    count = 0
    for event in events:
        row = audit_event_as_dict(event)
        writer.writerow({key: csv_cell(value) for key, value in row.items()})
        count += 1
    return count
