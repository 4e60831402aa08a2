"""What the exchange stores: audit events, Rolegate's signing keys and the used-token ledger."""

from __future__ import annotations

from django.db import models


class AuditEvent(models.Model):
    """One decision of the exchange (docs/api.md#audit-trail): append-only, never a raw token or credential.

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
    namespace_id = models.CharField(max_length=64, null=True, blank=True)
    ref = models.CharField(max_length=255, null=True, blank=True)
    ref_type = models.CharField(max_length=16, null=True, blank=True)
    ref_protected = models.CharField(max_length=16, null=True, blank=True)
    environment = models.CharField(max_length=255, null=True, blank=True)
    pipeline_source = models.CharField(max_length=64, null=True, blank=True)
    pipeline_id = models.CharField(max_length=64, null=True, blank=True)
    job_id = models.CharField(max_length=64, null=True, blank=True)
    user_login = models.CharField(max_length=255, null=True, blank=True)
    ci_config_ref_uri = models.CharField(max_length=1024, null=True, blank=True)
    environment_protected = models.CharField(max_length=16, null=True, blank=True)
    deployment_tier = models.CharField(max_length=64, null=True, blank=True)
    runner_environment = models.CharField(max_length=64, null=True, blank=True)

    requested_role_arn = models.CharField(max_length=255, null=True, blank=True)
    role_arn = models.CharField(max_length=255, null=True, blank=True, help_text="The granted role")
    mapping = models.CharField(max_length=64, null=True, blank=True)
    minted_jti = models.CharField(max_length=64, null=True, blank=True)
    role_session_name = models.CharField(max_length=64, null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    token_verified = models.BooleanField(
        default=False,
        help_text="The subject token's signature and issuer were verified. When false, the claim fields "
        "are what an unverified token said: attacker-chosen text.",
    )
    count = models.PositiveIntegerField(
        default=1,
        help_text="How many requests this event records: 1, or for an aggregate event (requests refused "
        "before a subject token was read) how many of one client, endpoint and reason in its minute.",
    )
    # client|endpoint|reason|minute of an aggregate event; null for every per-request event.
    aggregate_key = models.CharField(max_length=128, null=True, blank=True, unique=True, editable=False)

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
        if self.outcome == self.Outcome.GRANTED:
            return f"{self.request_id}: granted"
        return f"{self.request_id}: denied ({self.reason})"


class SigningKey(models.Model):
    """An RSA key Rolegate signs minted tokens with (see ``exchange.keys`` for the rotation).

    ``next`` keys are published in the JWKS but do not sign yet; the one ``current`` key signs;
    ``previous`` keys are still published until every token they signed has expired; ``retired``
    keys are kept for the record only. The private part is stored encrypted (AES-GCM, key derived
    from ``DJANGO_SECRET_KEY``) and never leaves ``exchange.keys``.
    """

    class State(models.TextChoices):
        NEXT = "next", "next (published, not signing yet)"
        CURRENT = "current", "current (signing)"
        PREVIOUS = "previous", "previous (published until its tokens expire)"
        RETIRED = "retired", "retired"

    id = models.BigAutoField(primary_key=True)
    kid = models.CharField(max_length=64, unique=True, help_text="RFC 7638 JWK thumbprint (SHA-256)")
    state = models.CharField(max_length=8, choices=State.choices, db_index=True)
    public_jwk = models.JSONField(help_text="The public key as a JWK (kty, n, e)")
    private_key_encrypted = models.BinaryField(editable=False)
    created_at = models.DateTimeField()
    activates_at = models.DateTimeField(help_text="From this time on a next key may become the signing key")
    activated_at = models.DateTimeField(null=True, blank=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    retires_at = models.DateTimeField(
        null=True, blank=True, help_text="Unpublished after this time: every token it signed has expired"
    )
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["state"], condition=models.Q(state="current"), name="signing_key_one_current"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kid} ({self.state})"


class UsedToken(models.Model):
    """A subject token already exchanged for a role: the database refuses a second exchange.

    Rows are useless once the token has expired (it would be refused anyway) and are pruned.
    """

    id = models.BigAutoField(primary_key=True)
    issuer = models.CharField(max_length=64)
    jti = models.CharField(max_length=255)
    role_arn = models.CharField(max_length=255)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["issuer", "jti", "role_arn"], name="used_token_once_per_role"),
        ]

    def __str__(self) -> str:
        return f"{self.issuer} {self.jti} {self.role_arn}"
