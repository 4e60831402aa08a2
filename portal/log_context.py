"""What every log line says about where it comes from (docs/operations.md "Logs").

The request id (assigned by :class:`portal.middleware.RequestIdMiddleware`, the same id as the
request's audit event) and the Celery task id live in context variables for the duration of a
request or a task; :class:`ContextFilter`, on every handler, copies them onto each record, so
``%(request_id)s`` / ``%(task_id)s`` work in any format and the JSON formatter writes them as
fields. Nothing here reads a request or a token: ids only.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

request_id_var: ContextVar[str | None] = ContextVar("rolegate_request_id", default=None)
task_id_var: ContextVar[str | None] = ContextVar("rolegate_task_id", default=None)


class ContextFilter(logging.Filter):
    """Put ``request_id`` and ``task_id`` (``None`` outside a request / task) on every record,
    and ``context``: the same as `` request_id=... task_id=...`` text for plain formats."""

    def filter(self, record: logging.LogRecord) -> bool:
        # An id passed in ``extra`` (an audit event's own) wins over the context's.
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        task_id = getattr(record, "task_id", None) or task_id_var.get()
        record.request_id = request_id
        record.task_id = task_id
        parts = [f"request_id={request_id}"] if request_id else []
        if task_id:
            parts.append(f"task_id={task_id}")
        record.context = (" " + " ".join(parts)) if parts else ""
        return True


PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s%(context)s"


def json_formatter() -> JsonFormatter:
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, request_id,
    task_id, anything passed in ``extra`` (e.g. ``audit``), and the traceback as ``exc_info``."""
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s %(request_id)s %(task_id)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
        # ``context`` is the plain format's rendering of the two ids: not a field of its own.
        reserved_attrs=[*RESERVED_ATTRS, "context"],
    )


def logging_config(*, log_format: str, level: str) -> dict:
    """Rolegate's ``LOGGING``: plain text (development default) or JSON lines (``json``)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "portal.log_context.ContextFilter"}},
        "formatters": {
            "plain": {"format": PLAIN_FORMAT},
            "json": {"()": "portal.log_context.json_formatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json" if log_format == "json" else "plain",
                "filters": ["context"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Django's own console handler (development mode) would print every django.* line twice.
            "django": {"handlers": [], "level": "NOTSET"},
            "django.db.backends": {"level": "WARNING"},
            # botocore's INFO lines ("Found credentials in environment variables") are noise on
            # every command's standard error, where a command promises one line of reason.
            "botocore": {"level": "WARNING"},
            # django-axes greets every process at INFO ("AXES: BEGIN version ..."); lockouts are warnings.
            "axes": {"level": "WARNING"},
            # Audit events as log lines (ROLEGATE_AUDIT_LOG): INFO whatever the root level.
            "rolegate.audit": {"level": "INFO"},
        },
    }
