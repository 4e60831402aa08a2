"""Celery tasks of the alerts: thin, JSON arguments (ids only, never a webhook URL)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from console.alerts import services
from console.alerts.webhooks import WebhookTransientError

logger = logging.getLogger(__name__)

IN_PROCESS_ATTEMPTS = 3


@shared_task(name="console.alerts.evaluate")
def alerts_evaluate_task() -> int:
    """Periodic (beat, every minute) and after each IAM sync task: open and clear problems, then
    queue one delivery per change and webhook (after the evaluation has committed)."""
    changes = services.alerts_evaluate()
    for delivery in services.deliveries(changes):
        if settings.CELERY_BROKER_URL:
            alert_deliver_task.delay(**delivery)
        else:
            _deliver_here(delivery)
    return len(changes)


def _deliver_here(delivery: dict) -> None:
    """Without a broker (tasks in-process) a delivery is tried here, a few times at once: Celery's
    eager mode raises ``Retry`` instead of retrying, and nothing would try again later."""
    for _ in range(IN_PROCESS_ATTEMPTS - 1):
        try:
            services.alert_deliver(**delivery)
            return
        except WebhookTransientError:
            continue
    try:
        services.alert_deliver(**delivery)
    except WebhookTransientError as exc:
        logger.error(
            "alert %s/%s not delivered to %s: %s",
            delivery["problem_id"],
            delivery["event"],
            delivery["destination"],
            exc,
        )


@shared_task(
    name="console.alerts.deliver",
    autoretry_for=(WebhookTransientError,),
    retry_backoff=10,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=8,
)
def alert_deliver_task(problem_id: int, event: str, destination: str) -> bool:
    """Tell one webhook that a problem opened or cleared; retried on timeouts, 429 and 5xx only."""
    return services.alert_deliver(problem_id=problem_id, event=event, destination=destination)
