"""Alerts: compare what is wrong now with the problems still open, and deliver the difference.

:func:`alerts_evaluate` opens a :class:`~console.alerts.models.Problem` for each problem newly
seen and clears each open one no longer seen, in one transaction; the caller queues one delivery
per change and webhook (:func:`deliveries`). Evaluating again without a change changes nothing
and sends nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from console.alerts import webhooks
from console.alerts.models import AlertWebhook, Problem
from console.alerts.problems import current_problems

logger = logging.getLogger(__name__)

OPENED = "opened"
CLEARED = "cleared"


@dataclass(frozen=True)
class Destination:
    ref: str  # what a queued delivery names: "env:<index>" or "db:<id>", never the URL
    name: str
    url: str
    kind: str


def destinations() -> list[Destination]:
    """``ROLEGATE_ALERT_WEBHOOKS``, then the enabled webhooks of the admin."""
    found = [
        Destination(f"env:{index}", f"ROLEGATE_ALERT_WEBHOOKS #{index + 1}", url, kind)
        for index, (kind, url) in enumerate(settings.ROLEGATE_ALERT_WEBHOOKS)
    ]
    for hook in AlertWebhook.objects.filter(enabled=True).order_by("pk"):
        found.append(Destination(f"db:{hook.pk}", hook.name, hook.url, hook.kind))
    return found


def destination_get(ref: str) -> Destination | None:
    return next((d for d in destinations() if d.ref == ref), None)


@transaction.atomic
def alerts_evaluate(*, now: datetime | None = None) -> list[tuple[int, str]]:
    """Open and clear problems; returns the changes as ``(problem id, "opened"|"cleared")``."""
    now = now or timezone.now()
    found = {problem.key: problem for problem in current_problems()}
    still_open = {p.key: p for p in Problem.objects.select_for_update().filter(cleared_at__isnull=True)}
    changes: list[tuple[int, str]] = []
    for key, problem in found.items():
        if key in still_open:
            continue
        try:
            with transaction.atomic():
                row = Problem.objects.create(
                    key=key, kind=problem.kind, subject=problem.subject, summary=problem.summary, opened_at=now
                )
        except IntegrityError:  # a concurrent evaluation opened it first, and announces it
            continue
        changes.append((row.pk, OPENED))
        logger.warning("alert opened: %s", problem.summary)
    for key, row in still_open.items():
        if key not in found:
            row.cleared_at = now
            row.save(update_fields=["cleared_at"])
            changes.append((row.pk, CLEARED))
            logger.info("alert cleared: %s", row.summary)
    return changes


def deliveries(changes: list[tuple[int, str]]) -> list[dict]:
    """One delivery (JSON-friendly task arguments: ids only) per change and webhook."""
    refs = [d.ref for d in destinations()]
    return [{"problem_id": pk, "event": event, "destination": ref} for pk, event in changes for ref in refs]


def problem_as_dict(problem: Problem) -> dict:
    return {
        "key": problem.key,
        "kind": problem.kind,
        "subject": problem.subject,
        "summary": problem.summary,
        "opened_at": problem.opened_at.isoformat().replace("+00:00", "Z"),
        "cleared_at": problem.cleared_at.isoformat().replace("+00:00", "Z") if problem.cleared_at else None,
        "rolegate": settings.ROLEGATE_ISSUER,
    }


def alert_deliver(*, problem_id: int, event: str, destination: str) -> bool:
    """Post one change to one webhook. :class:`~console.alerts.webhooks.WebhookTransientError` is
    raised for the task to retry; a refusal is logged and dropped (False), as is a problem or
    webhook deleted meanwhile."""
    problem = Problem.objects.filter(pk=problem_id).first()
    target = destination_get(destination)
    if problem is None or target is None:
        logger.info("alert %s/%s to %s dropped: the problem or webhook is gone", problem_id, event, destination)
        return False
    body = webhooks.payload(kind=target.kind, event=event, problem=problem_as_dict(problem))
    try:
        webhooks.post(target.url, body)
    except webhooks.WebhookPermanentError as exc:
        logger.error("alert webhook %s refused %s of %s: %s", target.name, event, problem.key, exc)
        return False
    return True
