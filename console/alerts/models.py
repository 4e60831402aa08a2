"""Where alerts go (:class:`AlertWebhook`) and what they were about (:class:`Problem`)."""

from __future__ import annotations

from django.core.validators import URLValidator
from django.db import models


class AlertWebhook(models.Model):
    """A webhook told about problems (besides those in ``ROLEGATE_ALERT_WEBHOOKS``)."""

    class Kind(models.TextChoices):
        JSON = "json", "generic JSON"
        SLACK = "slack", 'Slack-compatible ({"text": ...})'

    name = models.CharField(max_length=64, unique=True)
    url = models.CharField(
        "URL",
        max_length=1000,
        validators=[URLValidator(schemes=["https", "http"])],
        help_text="Receives a POST per problem opened or cleared. Treat it as a secret (Slack's URLs are).",
    )
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.JSON)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Problem(models.Model):
    """Something wrong, from when an evaluation first saw it until one saw it gone.

    At most one open row per ``key`` (a stable name: ``role-sync-failed:<role id>``), so each
    problem is announced once when it opens and once when it clears."""

    class Kind(models.TextChoices):
        ROLE_SYNC_FAILED = "role_sync_failed", "role sync failed"
        ROLE_SHRINK_ONLY = "role_shrink_only", "role in shrink-only state"
        POLICY_NEAR_QUOTA = "policy_near_quota", "trust policy above 90 % of its quota"
        DRIFT_REPAIRED = "drift_repaired", "drift repaired"
        JWKS_UNREACHABLE = "jwks_unreachable", "issuer's JWKS unreachable"
        SIGNING_KEY_UNUSABLE = "signing_key_unusable", "signing key unusable"
        REVOCATION_PERFORMED = "revocation_performed", "live sessions revoked"
        IDENTITY_CHANGED = "identity_changed", "jobs refused: a pinned path has another GitLab id"

    key = models.CharField(max_length=200)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    subject = models.CharField(max_length=200, help_text="The role, issuer or key concerned.")
    summary = models.TextField()
    opened_at = models.DateTimeField()
    cleared_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=models.Q(cleared_at__isnull=True), name="problem_open_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.key} ({'cleared' if self.cleared_at else 'open'})"
