"""Periodic housekeeping of the exchange (scheduled in ``CELERY_BEAT_SCHEDULE``)."""

from __future__ import annotations

from celery import shared_task

from exchange import keys, services


@shared_task
def signing_keys_promote_task() -> None:
    """Start signing with a rotated key once its overlap has passed, and retire old keys whose
    tokens have all expired, even when no exchange happens to trigger it."""
    keys.signing_keys_promote()


@shared_task
def used_tokens_prune_task() -> None:
    """Forget replay rows of expired tokens, which would be refused anyway."""
    services.used_tokens_prune()
