"""What the exchange stores: audit events (and, later, signing keys and used tokens)."""

from __future__ import annotations

from django.db import models


class AuditEvent(models.Model):
    """One decision of the exchange (CONTRACT §7): append-only, never a raw token or credential.

    Claim fields are ``None`` when the claim was absent or the token could not be read that far.
    """

    class Outcome(models.TextChoices):
        GRANTED = "granted", "granted"
        DENIED = "denied", "denied"

    id = models.BigAutoField(primary_key=True)
    time = models.DateTimeField(db_index=True)
    request_id = models.CharField(max_length=64, unique=True)
    endpoint = models.CharField(max_length=16, help_text="token or credentials")
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    reason = models.CharField(max_length=64, db_index=True)
    detail = models.TextField()
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True, default="")

    issuer = models.CharField(max_length=64, null=True, blank=True, help_text="Registered issuer name")
    iss = models.CharField(max_length=255, null=True, blank=True, help_text="The token's iss claim as presented")
    jti = models.CharField(max_length=255, null=True, blank=True)
    sub = models.CharField(max_length=255, null=True, blank=True)
    project_path = models.CharField(max_length=255, null=True, blank=True)
    project_id = models.CharField(max_length=64, null=True, blank=True)
    namespace_path = models.CharField(max_length=255, null=True, blank=True)
    ref = models.CharField(max_length=255, null=True, blank=True)
    ref_type = models.CharField(max_length=16, null=True, blank=True)
    ref_protected = models.CharField(max_length=16, null=True, blank=True)
    environment = models.CharField(max_length=255, null=True, blank=True)
    pipeline_source = models.CharField(max_length=64, null=True, blank=True)
    pipeline_id = models.CharField(max_length=64, null=True, blank=True)
    job_id = models.CharField(max_length=64, null=True, blank=True)
    user_login = models.CharField(max_length=255, null=True, blank=True)

    requested_role_arn = models.CharField(max_length=255, null=True, blank=True)
    role_arn = models.CharField(max_length=255, null=True, blank=True, help_text="The granted role")
    mapping = models.CharField(max_length=64, null=True, blank=True)
    minted_jti = models.CharField(max_length=64, null=True, blank=True)
    role_session_name = models.CharField(max_length=64, null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-time", "-id"]
        indexes = [
            models.Index(fields=["outcome", "time"], name="audit_outcome_time"),
            models.Index(fields=["project_path", "time"], name="audit_project_time"),
            models.Index(fields=["role_arn", "time"], name="audit_role_time"),
            models.Index(fields=["mapping", "time"], name="audit_mapping_time"),
            models.Index(fields=["job_id"], name="audit_job"),
            models.Index(fields=["pipeline_id"], name="audit_pipeline"),
            models.Index(fields=["user_login", "time"], name="audit_user_time"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.outcome} {self.reason}"
