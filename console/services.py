"""Writes of the platform console: API tokens and audit retention."""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser, User
from django.db import transaction
from django.utils import timezone

from console.models import ApiToken
from exchange.models import AuditEvent

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "rgt_"
PREFIX_LENGTH = 12
# How often last_used_at is written for a token in use (one UPDATE per token per interval, not per request).
LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def password_fingerprint(user: AbstractBaseUser) -> str:
    """Changes whenever the user's password does (a new salt even for the same password)."""
    return hashlib.sha256(f"rolegate-api-token:{user.password}".encode()).hexdigest()


def api_token_still_valid(*, token: ApiToken) -> bool:
    """A token dies with its user's password and with the user's deactivation: either revokes
    it for good (a later reactivation does not bring it back)."""
    user = token.user
    if user.is_active and token.password_fingerprint == password_fingerprint(user):
        return True
    api_token_revoke(token=token)
    logger.info(
        "revoked API token %s: its user %s was %s",
        token.prefix,
        user.pk,
        "deactivated" if not user.is_active else "given a new password",
    )
    return False


@transaction.atomic
def api_token_create(*, user: User, name: str, expires_at: datetime | None = None) -> tuple[ApiToken, str]:
    """Create a token for ``user``; returns the row and the raw token, which is never stored."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user=user,
        name=name,
        prefix=raw[:PREFIX_LENGTH],
        token_sha256=api_token_hash(raw),
        expires_at=expires_at,
        password_fingerprint=password_fingerprint(user),
    )
    token.full_clean()
    token.save()
    logger.info("created API token %s for %s", token.prefix, user)
    return token, raw


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    ApiToken.objects.filter(pk=token.pk).update(revoked=True)
    token.revoked = True
    logger.info("revoked API token %s of %s", token.prefix, token.user_id)
    return token


def api_token_touch(*, token: ApiToken, now: datetime | None = None) -> None:
    """Record use, at most once per :data:`LAST_USED_RESOLUTION`."""
    now = now or timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now


def audit_events_purge(*, older_than_days: int, batch_size: int = 5000, now: datetime | None = None) -> int:
    """Delete audit events older than ``older_than_days``, ``batch_size`` rows per transaction,
    so a large backlog never holds one long lock. Returns how many were deleted."""
    cutoff = (now or timezone.now()) - timedelta(days=older_than_days)
    deleted = 0
    while True:
        ids = list(
            AuditEvent.objects.filter(time__lt=cutoff).order_by("time").values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            break
        with transaction.atomic():
            count, _ = AuditEvent.objects.filter(id__in=ids).delete()
        deleted += count
    if deleted:
        logger.info("deleted %d audit events older than %s", deleted, cutoff.isoformat())
    return deleted


def api_token_update(*, token: ApiToken, name: str, expires_at: datetime | None, revoked: bool) -> ApiToken:
    """Rename, re-date or revoke a token; its hash never changes (a revoked token stays revoked)."""
    token.name = name
    token.expires_at = expires_at
    token.revoked = token.revoked or revoked
    token.full_clean()
    token.save(update_fields=["name", "expires_at", "revoked"])
    return token
