"""The registry: which GitLab jobs may assume which AWS roles (docs/configuration.md#words, docs/configuration.md).

Models hold fields and field-level validation only. Writes go through ``mappings.services``
(one place for the rules, used by the admin and by ``apply``); reads for the exchange go through
``mappings.selectors``.
"""

from __future__ import annotations

import re
import uuid
from typing import TypeVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator, validate_slug
from django.db import models
from django.utils import timezone

from mappings import addresses, minted, patterns
from mappings import guardrails as guardrail_rules

# Every pipeline_source GitLab documents for CI ID tokens (tests/fixtures/gitlab_id_token_claims.json).
PIPELINE_SOURCES = (
    "api",
    "chat",
    "external",
    "external_pull_request_event",
    "merge_request_event",
    "ondemand_dast_scan",
    "ondemand_dast_validation",
    "parent_pipeline",
    "pipeline",
    "push",
    "schedule",
    "security_orchestration_policy",
    "trigger",
    "web",
    "webide",
)

# GitLab's deployment tiers and runner environments (tests/fixtures/gitlab_id_token_claims.json).
DEPLOYMENT_TIERS = ("production", "staging", "testing", "development", "other")
RUNNER_ENVIRONMENTS = ("gitlab-hosted", "self-hosted")

SLUG_HELP = "Letters, digits, '-' and '_'; unique."
EMPTY_PATTERN = "The pattern must not be empty; use '*' to match anything."


def validate_issuer_url(value: str) -> None:
    """An issuer URL must equal the tokens' ``iss`` claim: scheme + host (+ path), nothing else."""
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("Enter an absolute https:// URL, for example https://gitlab.com.")
    if parts.scheme == "http" and not settings.ROLEGATE_ALLOW_HTTP:
        raise ValidationError(
            "Only https:// URLs are accepted; plain http is allowed only with ROLEGATE_ALLOW_HTTP=1 "
            "(local development and tests)."
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValidationError("The URL must not contain a query, fragment or credentials.")
    refusal = addresses.host_refusal(parts.hostname)
    if refusal:
        raise ValidationError(f"Rolegate would fetch keys from this URL, and {refusal}")


def validate_issuer_base_url(value: str) -> None:
    validate_issuer_url(value)
    if value.endswith("/"):
        raise ValidationError(
            "Remove the trailing '/': the URL must equal the tokens' iss claim exactly "
            "(GitLab's is https://gitlab.com, not https://gitlab.com/)."
        )


def validate_audiences(value: object) -> None:
    if not isinstance(value, list) or not value:
        raise ValidationError("List at least one audience (the aud value of your jobs' id_tokens).")
    for item in value:
        if not isinstance(item, str) or not item.strip() or item != item.strip():
            raise ValidationError(f"Audience {item!r} must be a non-empty string without surrounding spaces.")
    if len(set(value)) != len(value):
        raise ValidationError("Audiences must not repeat.")


def validate_pattern(value: str) -> None:
    problems = patterns.pattern_problems(value, label="the pattern")
    if problems:
        raise ValidationError([p[0].upper() + p[1:] + "." for p in problems])


def validate_pipeline_sources(value: object) -> None:
    if not isinstance(value, list):
        raise ValidationError("Give a list of pipeline sources, or leave it empty for any.")
    unknown = [item for item in value if item not in PIPELINE_SOURCES]
    if unknown:
        raise ValidationError(
            f"Unknown pipeline source(s) {', '.join(map(repr, unknown))}; GitLab's are: {', '.join(PIPELINE_SOURCES)}."
        )
    if len(set(value)) != len(value):
        raise ValidationError("Pipeline sources must not repeat.")


def validate_deployment_tiers(value: object) -> None:
    if not isinstance(value, list):
        raise ValidationError("Give a list of deployment tiers, or leave it empty for any.")
    unknown = [item for item in value if item not in DEPLOYMENT_TIERS]
    if unknown:
        raise ValidationError(
            f"Unknown deployment tier(s) {', '.join(map(repr, unknown))}; GitLab's are: {', '.join(DEPLOYMENT_TIERS)}."
        )
    if len(set(value)) != len(value):
        raise ValidationError("Deployment tiers must not repeat.")


# GitLab's ids (project_id, namespace_id claims): database ids it never reuses, sent as JSON strings
# of digits. The mapping holds the claim's exact text, so no leading zero (GitLab never sends one).
validate_gitlab_id = RegexValidator(
    r"^[1-9][0-9]{0,18}\Z",
    'A GitLab id is a positive whole number of at most 19 digits without leading zeros, e.g. "20".',
)
# A pin's id (IdentityPin.gitlab_id): the id claim of a verified token as it came (the catalogue's
# 64 characters), so looser than a mapping's validate_gitlab_id above.
validate_pin_id = RegexValidator(r"^[0-9]{1,64}\Z", "A GitLab id is 1 to 64 digits, e.g. 20.")
validate_account_id = RegexValidator(r"^[0-9]{12}\Z", 'An AWS account id is exactly 12 digits, e.g. "123456789012".')
# https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html (RoleName)
validate_role_name = RegexValidator(
    r"^[A-Za-z0-9_+=,.@-]{1,64}\Z",
    "IAM role names are 1-64 characters of letters, digits and + = , . @ _ -.",
    flags=re.NOFLAG,  # as in the migrations that record this validator
)
validate_role_arn = RegexValidator(
    r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}\Z",
    "Enter an IAM role ARN, e.g. arn:aws:iam::123456789012:role/rolegate-manager.",
)


class TimestampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Issuer(TimestampedModel):
    """A GitLab instance whose CI ID tokens Rolegate accepts."""

    name = models.CharField(max_length=64, unique=True, validators=[validate_slug], help_text=SLUG_HELP)
    url = models.CharField(
        "URL",
        max_length=255,
        unique=True,
        validators=[validate_issuer_base_url],
        help_text="Must equal the tokens' iss claim, e.g. https://gitlab.com.",
    )
    audiences = models.JSONField(
        default=list,
        validators=[validate_audiences],
        error_messages={"blank": "List at least one audience (the aud value of your jobs' id_tokens)."},
        help_text="aud values accepted on incoming ID tokens (the aud of the job's id_tokens).",
    )
    jwks_url = models.CharField(
        "JWKS URL",
        max_length=500,
        blank=True,
        null=True,
        validators=[validate_issuer_url],
        help_text="Optional; by default discovered from <url>/.well-known/openid-configuration.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Account(TimestampedModel):
    """An AWS account whose roles' trust Rolegate manages."""

    class Mode(models.TextChoices):
        BROKERED = "brokered", "brokered (roles trust Rolegate's issuer)"
        DIRECT = "direct", "direct (roles trust the GitLab issuer itself)"

    class SyncStatus(models.TextChoices):
        PENDING = "pending", "pending"
        IN_SYNC = "in_sync", "in sync"
        FAILED = "failed", "failed"

    name = models.CharField(max_length=64, unique=True, validators=[validate_slug], help_text=SLUG_HELP)
    account_id = models.CharField("account id", max_length=12, unique=True, validators=[validate_account_id])
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.BROKERED)
    audience = models.CharField(
        max_length=255,
        default="sts.amazonaws.com",
        help_text="Client id on the account's OIDC provider, and the aud of tokens minted for it.",
    )
    manager_role_arn = models.CharField(
        "manager role ARN",
        max_length=600,
        blank=True,
        null=True,
        validators=[validate_role_arn],
        help_text="Optional role the worker assumes to manage IAM in this account.",
    )
    trust_policy_limit = models.PositiveIntegerField(
        default=2048,
        validators=[MinValueValidator(2048), MaxValueValidator(4096)],
        help_text="The account's ACLSizePerRole quota in characters: 2048 by default, up to 4096 on request.",
    )
    revoke_sessions_on_removal = models.BooleanField(
        "revoke sessions on removal",
        default=False,
        help_text="Removing or disabling a mapping also revokes the role's live sessions issued before the "
        "narrowed trust policy reached IAM (an inline deny policy on the role; needs iam:PutRolePolicy). "
        "Every job using the role then has to assume it again.",
    )

    # Guardrails (mappings.guardrails): limits every role and mapping of the account must keep.
    require_protected = models.BooleanField(
        default=False, help_text="Every mapping must require protected: true (protected branches and tags only)."
    )
    forbid_pipeline_sources = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_pipeline_sources],
        help_text="Pipeline sources no mapping may accept; mappings must then list the sources they accept.",
    )
    max_project_breadth = models.CharField(
        max_length=16,
        choices=[
            (guardrail_rules.ANY, "any (no limit)"),
            (guardrail_rules.NAMESPACE, "namespace (patterns inside one namespace, such as platform/*)"),
            (guardrail_rules.PROJECT, "project (one exact project per mapping)"),
        ],
        default=guardrail_rules.ANY,
        help_text="The broadest project pattern a mapping may have.",
    )
    require_environment = models.BooleanField(
        default=False, help_text="Every mapping must have an environment pattern (deployment jobs only)."
    )
    max_session_seconds = models.PositiveIntegerField(
        "session length cap",
        null=True,
        blank=True,
        validators=[MinValueValidator(900), MaxValueValidator(43200)],
        help_text="Optional: no role of the account may allow sessions longer than this (900 to 43200 seconds).",
    )

    source_identity = models.BooleanField(
        default=False,
        help_text="Minted tokens carry an AWS source identity (gl-<project_id>-<job_id>) that survives role "
        "chaining and shows in CloudTrail; trust policies allow sts:SetSourceIdentity.",
    )

    require_ci_config_ref_uri = models.CharField(
        "required CI config ref URI",
        max_length=255,
        null=True,
        blank=True,
        validators=[validate_pattern],
        help_text="Optional pattern: every mapping must have a ci_config_ref_uri pattern within it (the pipeline "
        "definitions the account's roles accept).",
    )

    # OIDC provider sync state, written by the IAM sync only.
    provider_status = models.CharField(max_length=16, choices=SyncStatus.choices, default=SyncStatus.PENDING)
    provider_synced_at = models.DateTimeField(null=True, blank=True)
    provider_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.audience is not None and (not self.audience.strip() or self.audience != self.audience.strip()):
            raise ValidationError({"audience": "The audience must be a non-empty value without surrounding spaces."})
        needs_tags = guardrail_rules.Guardrails.of(self).tag_conditions
        if self.mode == Account.Mode.DIRECT and self.source_identity:
            raise ValidationError(
                {
                    "source_identity": "In direct mode jobs present GitLab's own token to AWS, which carries no "
                    "source identity; use brokered mode or turn it off."
                }
            )
        if self.mode == Account.Mode.DIRECT and needs_tags:
            raise ValidationError(
                {
                    name: "In direct mode IAM checks only a GitLab token's project and ref, so this guardrail "
                    "would promise a condition nothing enforces; use brokered mode or turn it off."
                    for name in needs_tags
                }
            )

    @property
    def guardrails(self) -> guardrail_rules.Guardrails:
        return guardrail_rules.Guardrails.of(self)


class Role(TimestampedModel):
    """An IAM role whose trust policy Rolegate owns."""

    class SyncStatus(models.TextChoices):
        PENDING = "pending", "pending"
        IN_SYNC = "in_sync", "in sync"
        DRIFT = "drift", "drift detected"
        FAILED = "failed", "failed"
        # The full policy could not be written; the live trust minus what is no longer desired was.
        SHRINK_ONLY = "shrink_only", "shrink-only (trust removed, additions missing)"

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="roles")
    name = models.CharField(max_length=64, validators=[validate_role_name], help_text="The IAM role name.")
    max_session_seconds = models.PositiveIntegerField(
        default=3600,
        validators=[MinValueValidator(900), MaxValueValidator(43200)],
        help_text="Longest session STS may grant: 900 to 43200 seconds.",
    )
    session_tags = models.BooleanField(
        default=True, help_text="Put claim-derived session tags in minted tokens (needs sts:TagSession)."
    )

    # IAM sync state, written by the IAM sync only.
    sync_status = models.CharField(max_length=16, choices=SyncStatus.choices, default=SyncStatus.PENDING)
    synced_at = models.DateTimeField(null=True, blank=True)
    live_policy_sha256 = models.CharField(max_length=64, blank=True, default="")
    drift = models.BooleanField(default=False)
    last_error = models.TextField(blank=True, default="")
    live_policy = models.TextField(
        blank=True, default="", editable=False, help_text="The live trust policy as last read from IAM."
    )
    desired_policy_sha256 = models.CharField(max_length=64, blank=True, default="", editable=False)
    policy_size = models.PositiveIntegerField(
        null=True, blank=True, editable=False, help_text="Characters, as IAM counts them."
    )
    sync_warnings = models.JSONField(
        default=list, blank=True, editable=False, help_text="Mapping conditions IAM cannot enforce."
    )
    sync_queued_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="A sync task is queued (coalescing)."
    )
    missing_mappings = models.JSONField(
        default=list,
        blank=True,
        editable=False,
        help_text="Shrink-only: the mappings whose trust is not in IAM yet (the sync keeps retrying).",
    )
    sessions_revoked_before = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Sessions of this role issued before this moment are denied everything "
        "(the RolegateRevokeOlderSessions inline policy, as last written or read).",
    )

    class Meta:
        ordering = ["account__name", "name"]
        constraints = [models.UniqueConstraint(fields=["account", "name"], name="role_unique_name_per_account")]

    def __str__(self) -> str:
        return f"{self.account.name}/{self.name}"

    @property
    def arn(self) -> str:
        return role_arn(self.account.account_id, self.name)

    def clean(self) -> None:
        account = _related(self, "account", Account)
        if account is not None:
            _raise_violations(
                guardrail_rules.role_violations(
                    account.guardrails, max_session_seconds=self.max_session_seconds, account=f"Account {account}"
                )
            )


_Related = TypeVar("_Related", bound=models.Model)


def _related(obj: models.Model, name: str, model: type[_Related]) -> _Related | None:
    """``obj.<name>``, or None while it is unset (the missing field is reported on its own)."""
    try:
        value = getattr(obj, name)
    except models.ObjectDoesNotExist:
        return None
    return value if isinstance(value, model) else None


def _raise_violations(violations: list[guardrail_rules.Violation]) -> None:
    if violations:
        errors: dict[str, list[str]] = {}
        for violation in violations:
            errors.setdefault(violation.field, []).append(violation.message[0].upper() + violation.message[1:] + ".")
        raise ValidationError(errors)


def role_arn(account_id: str, name: str) -> str:
    return f"arn:aws:iam::{account_id}:role/{name}"


class Mapping(TimestampedModel):
    """Tokens from ``issuer`` whose claims match these patterns may assume ``role``."""

    class RefType(models.TextChoices):
        BRANCH = "branch", "branch"
        TAG = "tag", "tag"
        ANY = "any", "any"

    name = models.CharField(max_length=64, unique=True, validators=[validate_slug], help_text=SLUG_HELP)
    issuer = models.ForeignKey(Issuer, on_delete=models.PROTECT, related_name="mappings")
    role = models.ForeignKey(Role, on_delete=models.CASCADE, related_name="mappings")
    project = models.CharField(
        max_length=255,
        validators=[validate_pattern],
        error_messages={"blank": EMPTY_PATTERN},
        help_text="Pattern on project_path: '*' any run (also across '/'), '?' one character. "
        "'platform/*' covers every project in platform and its subgroups.",
    )
    project_id = models.CharField(
        "project ID",
        max_length=19,
        blank=True,
        null=True,
        validators=[validate_gitlab_id],
        help_text="Optional: require exactly this project_id claim (GitLab never reuses a project's id: a project "
        "deleted and re-created at the same path gets a new one). With it or a namespace ID, the project pattern "
        "may be left empty: it is then '*' (any path).",
    )
    namespace_id = models.CharField(
        "namespace ID",
        max_length=19,
        blank=True,
        null=True,
        validators=[validate_gitlab_id],
        help_text="Optional: require exactly this namespace_id claim, the id of the project's group or user "
        "namespace (a freed namespace path claimed by someone else gets a new id).",
    )
    ref = models.CharField(
        max_length=255,
        default="*",
        validators=[validate_pattern],
        error_messages={"blank": EMPTY_PATTERN},
        help_text="Pattern on ref; '*' for any.",
    )
    ref_type = models.CharField(max_length=8, choices=RefType.choices, default=RefType.ANY)
    protected = models.BooleanField(default=False, help_text='Require ref_protected == "true".')
    environment = models.CharField(
        max_length=255,
        blank=True,
        null=True,
        validators=[validate_pattern],
        help_text="Optional pattern on environment; a job without an environment never matches it.",
    )
    pipeline_sources = models.JSONField(
        default=list, blank=True, validators=[validate_pipeline_sources], help_text="Empty means any."
    )
    ci_config_ref_uri = models.CharField(
        "CI config ref URI",
        max_length=255,
        blank=True,
        null=True,
        validators=[validate_pattern],
        help_text="Optional pattern on ci_config_ref_uri, the pipeline definition that ran, e.g. "
        "'gitlab.example.com/platform/pipelines//deploy.yml@refs/heads/main'.",
    )
    environment_protected = models.BooleanField(
        default=False, help_text='Require environment_protected == "true" (a protected environment).'
    )
    deployment_tiers = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_deployment_tiers],
        help_text="Deployment tiers accepted (deployment_tier claim); empty means any.",
    )
    runner_environment = models.CharField(
        max_length=16,
        blank=True,
        null=True,
        choices=[(value, value) for value in RUNNER_ENVIRONMENTS],
        help_text="Optional: require runner_environment (gitlab-hosted or self-hosted).",
    )
    pin_identity = models.BooleanField(
        "pin identity",
        null=True,
        blank=True,
        default=None,
        help_text="Pin on first use: the first job granted through this mapping pins its project's and namespace's "
        "GitLab ids, and a later job whose path is the same but whose id differs is refused (identity_changed). "
        "Empty: the registry default (ROLEGATE_PIN_IDENTITY).",
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(fields=["issuer", "enabled"], name="mapping_issuer_enabled"),
            # The expiry scan (mappings.iam.selectors.expiries_between) runs every minute.
            models.Index(fields=["expires_at"], name="mapping_expires_at"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.environment == "":
            raise ValidationError(
                {"environment": "An empty environment pattern matches no job; leave it unset to match any job."}
            )
        if self.ci_config_ref_uri == "":
            raise ValidationError(
                {"ci_config_ref_uri": "An empty pattern matches no job; leave it unset to match any pipeline."}
            )
        if self.runner_environment == "":
            self.runner_environment = None
        for name in ("project_id", "namespace_id"):
            if getattr(self, name) == "":
                setattr(self, name, None)
        role = _related(self, "role", Role)  # a missing role is reported on the field itself
        conditioned = (
            self.project_id is not None
            or self.namespace_id is not None
            or self.protected
            or self.environment is not None
            or bool(self.pipeline_sources)
            or self.ci_config_ref_uri is not None
            or self.environment_protected
            or bool(self.deployment_tiers)
            or self.runner_environment is not None
        )
        brokered_role = (
            role
            if role is not None and role.account_id is not None and role.account.mode == Account.Mode.BROKERED
            else None
        )
        if conditioned and brokered_role is not None and not brokered_role.session_tags:
            raise ValidationError(
                f"Role {role} does not use session tags, so IAM cannot check this mapping's project_id, "
                "namespace_id, protected, environment, pipeline_sources, ci_config_ref_uri, environment_protected, "
                "deployment_tiers or runner_environment conditions: its trust policy could hold only the project "
                "and ref. Turn on session_tags for the role, or drop the conditions."
            )
        for name in ("environment", "ci_config_ref_uri"):
            pattern = getattr(self, name)
            untaggable = minted.untaggable_pattern_chars(pattern) if isinstance(pattern, str) else ""
            if brokered_role is not None and brokered_role.session_tags and untaggable:
                # IAM compares this pattern with the session tag of the same name, whose values hold
                # only letters, digits, spaces and _ . : / = + - @ (docs/trust-model.md).
                raise ValidationError(
                    {
                        name: f"The pattern holds {untaggable!r}, which no AWS session tag value can: IAM checks "
                        f"it against the job's {name} tag, so it could never be met as written (and a rewritten "
                        "pattern would let in others). Use '?' or '*' in its place."
                    }
                )
        if role is not None and role.account_id is not None:
            _raise_violations(self.guardrail_violations(role.account, where=f"Account {role.account}"))

    def guardrail_violations(self, account: Account, *, where: str) -> list[guardrail_rules.Violation]:
        """What in this mapping breaks ``account``'s guardrails or its mode (``mappings.guardrails``);
        ``where`` names the account in the messages."""
        return guardrail_rules.mapping_violations(
            account.guardrails,
            project=self.project or None,
            protected=self.protected,
            environment=self.environment,
            pipeline_sources=self.pipeline_sources or (),
            ci_config_ref_uri=self.ci_config_ref_uri,
            project_id=self.project_id,
            namespace_id=self.namespace_id,
            direct=account.mode == Account.Mode.DIRECT,
            account=where,
        )

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_live(self) -> bool:
        return self.enabled and not self.is_expired


class SessionRevocation(models.Model):
    """One revocation of a role's live sessions: who asked, when, why, and the cut-off IAM got.

    Append-only. The cut-off of a revocation that follows a mapping's removal is the moment the
    sync wrote the narrowed trust policy (``cutoff`` is empty until then); an explicit one
    (admin, ``revoke_sessions``) carries its own."""

    role = models.ForeignKey(Role, on_delete=models.SET_NULL, null=True, blank=True, related_name="revocations")
    role_label = models.CharField("role", max_length=200, help_text="<account>/<role name> when it was asked for.")
    cutoff = models.DateTimeField(null=True, blank=True, help_text="Sessions issued before this are denied.")
    actor = models.CharField(max_length=150)
    reason = models.CharField(max_length=500)
    requested_at = models.DateTimeField(auto_now_add=True)
    applied_at = models.DateTimeField(null=True, blank=True, help_text="When the sync wrote it to IAM.")
    last_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return f"{self.role_label} before {self.cutoff.isoformat() if self.cutoff else '(the next sync)'}"


class RetiredRole(models.Model):
    """An IAM role Rolegate stopped managing (its role was deleted, renamed or moved) whose trust
    policy the next sync of its account still has to empty: IAM keeps a role's last policy."""

    account_id = models.CharField("account id", max_length=12)
    role_name = models.CharField(max_length=64)
    manager_role_arn = models.CharField(max_length=600, blank=True, null=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["account_id", "role_name"]
        constraints = [models.UniqueConstraint(fields=["account_id", "role_name"], name="retired_role_unique_identity")]

    def __str__(self) -> str:
        return f"{self.account_id}/{self.role_name}"


class IdentityPin(models.Model):
    """The GitLab id a path of an issuer had when a pinning mapping first granted it: a project's
    ``project_path`` -> ``project_id``, or a namespace's ``namespace_path`` -> ``namespace_id``
    (docs/trust-model.md, "Identity pins"). GitLab never reuses ids, so a token whose path matches but
    whose id differs comes from another project or namespace now living at that path.

    Written by the exchange on first use (``mappings.pins.pins_record``) or by ``apply`` from a
    file's ``pins:``; changed only by an accepted identity change (:class:`IdentityChange`). Part
    of the registry snapshot: every write moves the registry version and logs a ``pin`` change."""

    class Kind(models.TextChoices):
        PROJECT = "project", "project"
        NAMESPACE = "namespace", "namespace"

    issuer = models.ForeignKey(Issuer, on_delete=models.CASCADE, related_name="pins")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    path = models.CharField(max_length=255, help_text="project_path or namespace_path")
    gitlab_id = models.CharField("GitLab id", max_length=64, help_text="project_id or namespace_id")
    pinned_at = models.DateTimeField()
    pinned_by = models.CharField(
        max_length=200, blank=True, default="", help_text="The first use's mapping, or who accepted the change."
    )

    class Meta:
        ordering = ["issuer__name", "kind", "path"]
        constraints = [models.UniqueConstraint(fields=["issuer", "kind", "path"], name="identity_pin_unique_path")]

    def __str__(self) -> str:
        return f"{self.kind} {self.path} = {self.gitlab_id}"


class IdentityChange(models.Model):
    """One accepted identity change: a platform engineer moved a pin to a new GitLab id. Append-only;
    kept when the pin or its issuer goes (names, not keys)."""

    pin = models.ForeignKey(IdentityPin, on_delete=models.SET_NULL, null=True, blank=True, related_name="changes")
    issuer_name = models.CharField("issuer", max_length=64)
    kind = models.CharField(max_length=16, choices=IdentityPin.Kind.choices)
    path = models.CharField(max_length=255)
    old_id = models.CharField("old id", max_length=64)
    new_id = models.CharField("new id", max_length=64)
    actor = models.CharField(max_length=150)
    note = models.CharField(max_length=500)
    accepted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-accepted_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.path}: {self.old_id} -> {self.new_id}"


class RegistryVersion(models.Model):
    """A single row whose counter moves with every registry change, in the same transaction.

    Each process caches the registry for the matcher and checks this one row for each decision --
    the exchange in the statement that commits it (``mappings.selectors.registry_guard``), other
    readers before it -- so a change is seen by every process on its next request.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    version = models.BigIntegerField(default=0)
    # Changes with every bump too: unlike the counter it never repeats, even when a transaction
    # that moved the counter rolls back or a database is restored from a backup.
    stamp = models.UUIDField(default=uuid.uuid4)

    def __str__(self) -> str:
        return f"registry version {self.version}"


class RegistryChange(models.Model):
    """What one registry version changed: an issuer, account, role, mapping or pin (by id), written in
    the same transaction as the version bump (``mappings.services.registry_changed``).

    A process whose snapshot is at version ``v`` reads the changes after ``v`` and patches its
    snapshot instead of rebuilding it (``mappings.selectors.registry``). ``stamp`` is the
    version's stamp: a process checks that the log holds its own version with its own stamp
    (same history). ``all`` means "anything may have changed" (a bulk write): a full rebuild.
    Old versions are pruned; a process that is further behind rebuilds.
    """

    class Kind(models.TextChoices):
        ISSUER = "issuer", "issuer"
        ACCOUNT = "account", "account"
        ROLE = "role", "role"
        MAPPING = "mapping", "mapping"
        PIN = "pin", "identity pin"
        ALL = "all", "all"

    id = models.BigAutoField(primary_key=True)
    version = models.BigIntegerField(db_index=True)
    stamp = models.UUIDField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    object_id = models.BigIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return f"version {self.version}: {self.kind} {self.object_id}"
