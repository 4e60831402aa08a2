"""The registry's web admin for platform teams: who can assume what, at a glance.

Every write (add, change, delete, bulk delete, inline mappings on a role) goes through
``mappings.services`` like ``apply`` does: one place for the rules, the registry version and the
IAM sync scheduling. The forms show the models' own validation messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Field, Model, Q, QuerySet
from django.forms import BaseInlineFormSet, ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django_stubs_ext import StrPromise

from mappings import lint, selectors, services
from mappings.admin_pins import PinIdentitySelect
from mappings.admin_sync import AccountSyncAdminMixin, RoleSyncAdminMixin
from mappings.models import (
    DEPLOYMENT_TIERS,
    EMPTY_PATTERN,
    PIPELINE_SOURCES,
    Account,
    Issuer,
    Mapping,
    RetiredRole,
    Role,
    SessionRevocation,
)
from portal.admin import ReadOnlyAdmin

ROLE_SYNC_FIELDS = ("sync_status", "synced_at", "live_policy_sha256", "drift", "last_error")
PROVIDER_SYNC_FIELDS = ("provider_status", "provider_synced_at", "provider_error")


def _actor(request: HttpRequest) -> str:
    return f"admin:{request.user.get_username()}"


class LinesField(forms.CharField):
    """A list of strings edited one per line."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return "\n".join(str(item) for item in value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]  # a list, not a str
        text = super().to_python(value) or ""
        return [line.strip() for line in text.splitlines() if line.strip()]


class ThroughServicesForm(forms.ModelForm[Any]):
    """After the model's own validation, the registry services' checks of what saving would leave
    (guardrails of the account, trust-policy quotas), shown on the form before anything is saved."""

    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]  # private ModelForm hooks django-stubs leave out
        if self.errors or not _related_saved(self.instance):
            return
        try:
            services.registry_check(self.instance)
        except ValidationError as exc:
            self._update_errors(exc)  # type: ignore[attr-defined]


def _related_saved(obj: Model) -> bool:
    """Whether the objects ``obj`` refers to exist (an inline on an add page: not yet)."""
    for name in ("issuer", "role", "account"):
        related_id = getattr(obj, f"{name}_id", False)
        if related_id is None:
            return False
    return True


def _sources_field(help_text: str) -> forms.MultipleChoiceField:
    return forms.MultipleChoiceField(
        choices=[(source, source) for source in PIPELINE_SOURCES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=help_text,
    )


class IssuerForm(ThroughServicesForm):
    audiences = LinesField(help_text="aud values accepted on incoming ID tokens, one per line.")

    class Meta:
        model = Issuer
        fields = ("name", "url", "audiences", "jwks_url")


MAPPING_FIELDS = (
    "name",
    "issuer",
    "role",
    "project",
    "project_id",
    "namespace_id",
    "ref",
    "ref_type",
    "protected",
    "environment",
    "pipeline_sources",
    "ci_config_ref_uri",
    "environment_protected",
    "deployment_tiers",
    "runner_environment",
    "pin_identity",
    "expires_at",
    "enabled",
)


class MappingForm(ThroughServicesForm):
    pipeline_sources = _sources_field("None ticked means any pipeline source.")
    deployment_tiers = forms.MultipleChoiceField(
        choices=[(tier, tier) for tier in DEPLOYMENT_TIERS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked means any deployment tier (deployment_tier claim).",
    )
    pin_identity = forms.NullBooleanField(
        required=False,
        widget=PinIdentitySelect,
        label="Pin identity",
        help_text=str(Mapping._meta.get_field("pin_identity").help_text),
    )

    class Meta:
        model = Mapping
        fields = MAPPING_FIELDS
        error_messages = {"project": {"required": EMPTY_PATTERN}, "ref": {"required": EMPTY_PATTERN}}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A mapping bound by id alone leaves the project pattern empty: it is then '*' (any path).
        self.fields["project"].required = False

    def clean(self) -> dict[str, Any]:
        data = super().clean() or self.cleaned_data
        if not data.get("project") and "project" not in self.errors:
            if data.get("project_id") or data.get("namespace_id"):
                data["project"] = "*"
            else:
                self.add_error(
                    "project",
                    f"{EMPTY_PATTERN[:-1]} (or give a project ID or namespace ID: bound by id alone, the mapping's "
                    "pattern is then '*').",
                )
        return data


# The account's own fields (the form's, and the change page's first fieldset), then its guardrails.
ACCOUNT_FIELDS = (
    "name",
    "account_id",
    "mode",
    "audience",
    "manager_role_arn",
    "trust_policy_limit",
    "source_identity",
)
GUARDRAIL_FIELDS = (
    "require_protected",
    "forbid_pipeline_sources",
    "max_project_breadth",
    "require_environment",
    "max_session_seconds",
    "require_ci_config_ref_uri",
)


class AccountForm(ThroughServicesForm):
    forbid_pipeline_sources = _sources_field(
        "Pipeline sources no mapping may accept (for example merge_request_event: code from any contributor); "
        "mappings must then list the sources they accept."
    )

    class Meta:
        model = Account
        fields = (*ACCOUNT_FIELDS, *GUARDRAIL_FIELDS)


class RoleForm(ThroughServicesForm):
    class Meta:
        model = Role
        fields = ("account", "name", "max_session_seconds", "session_tags")


class ThroughServicesAdmin(admin.ModelAdmin[Any]):
    """Saves and deletes through ``mappings.services`` instead of the model's save/delete.

    The forms show the services' refusals as form errors; a refusal only the combined save can
    see (a role and its inline mappings together) rolls the save back with a message instead."""

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ValidationError as exc:
            for message in exc.messages:
                self.message_user(request, f"Nothing was saved: {message}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm[Any], change: bool) -> None:
        services.registry_save(obj, actor=_actor(request))

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        services.registry_delete(obj, actor=_actor(request))

    @transaction.atomic
    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset:
            services.registry_delete(obj, actor=_actor(request))

    def save_formset(
        self, request: HttpRequest, form: ModelForm[Any], formset: BaseInlineFormSet[Any, Any, Any], change: bool
    ) -> None:
        instances = formset.save(commit=False)
        for obj in formset.deleted_objects:
            services.registry_delete(obj, actor=_actor(request))
        for obj in instances:
            services.registry_save(obj, actor=_actor(request))
        formset.save_m2m()


def _with_account(db_field: Field[Any, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Role choices label themselves ``account/name``: load the accounts in the same query."""
    if db_field.name == "role":
        kwargs.setdefault("queryset", Role.objects.select_related("account"))
    return kwargs


class RoleFilter(admin.RelatedFieldListFilter):
    """Roles by ``account/name``, labelled without a query per role."""

    def field_choices(
        self, field: Field[Any, Any], request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> list[tuple[str, str | StrPromise]]:
        return [(str(role.pk), str(role)) for role in Role.objects.select_related("account")]


class ExpiredFilter(admin.SimpleListFilter):
    title = "expired"
    parameter_name = "expired"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return [("yes", "Expired"), ("no", "Not expired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        expired = Q(expires_at__isnull=False, expires_at__lte=timezone.now())
        if self.value() == "yes":
            return queryset.filter(expired)
        if self.value() == "no":
            return queryset.exclude(expired)
        return queryset


@admin.register(Issuer)
class IssuerAdmin(ThroughServicesAdmin):
    form = IssuerForm
    list_display = ("name", "url", "audience_list", "jwks_url", "mapping_count")
    search_fields = ("name", "url")
    fields = ("name", "url", "audiences", "jwks_url")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset: QuerySet[Any] = super().get_queryset(request).annotate(_mappings=Count("mappings"))
        return queryset

    @admin.display(description="audiences")
    def audience_list(self, obj: Issuer) -> str:
        return ", ".join(obj.audiences)

    @admin.display(description="mappings", ordering="_mappings")
    def mapping_count(self, obj: Any) -> int:
        return int(obj._mappings)  # annotated by get_queryset


@admin.register(Account)
class AccountAdmin(AccountSyncAdminMixin, ThroughServicesAdmin):
    form = AccountForm
    fieldsets = (
        (None, {"fields": ACCOUNT_FIELDS}),
        (
            "Guardrails (every role and mapping of the account must keep them)",
            {"fields": GUARDRAIL_FIELDS},
        ),
    )
    list_display = ("name", "account_id", "mode", "audience", "trust_policy_limit", "role_count", "provider_status")
    list_filter = ("mode", "provider_status")
    search_fields = ("name", "account_id")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset: QuerySet[Any] = super().get_queryset(request).annotate(_roles=Count("roles"))
        return queryset

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str] | tuple[str, ...]:
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields + tuple(name for name in PROVIDER_SYNC_FIELDS if name not in fields)

    @admin.display(description="roles", ordering="_roles")
    def role_count(self, obj: Any) -> int:
        return int(obj._roles)  # annotated by get_queryset


class MappingInline(admin.StackedInline[Mapping, Role]):
    """The role's mappings, one block each (a table row is too wide for the pipeline sources)."""

    model = Mapping
    form = MappingForm
    extra = 0
    show_change_link = True
    fields = tuple(name for name in MAPPING_FIELDS if name != "role")  # the role is the page's

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).select_related("issuer")


@admin.register(Role)
class RoleAdmin(RoleSyncAdminMixin, ThroughServicesAdmin):
    form = RoleForm
    list_display = ("__str__", "arn", "max_session_seconds", "session_tags", "live_mapping_count", "sync_status")
    list_filter = ("account", "sync_status", "session_tags")
    list_select_related = ("account",)
    search_fields = ("name", "account__name", "account__account_id", "mappings__project")
    inlines = [MappingInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        live = Q(mappings__enabled=True) & (
            Q(mappings__expires_at__isnull=True) | Q(mappings__expires_at__gt=timezone.now())
        )
        queryset: QuerySet[Any] = (
            super().get_queryset(request).annotate(_live=Count("mappings", filter=live, distinct=True))
        )
        return queryset

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str] | tuple[str, ...]:
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields + tuple(name for name in ROLE_SYNC_FIELDS if name not in fields)

    @admin.display(description="role ARN")
    def arn(self, obj: Role) -> str:
        return obj.arn

    @admin.display(description="live mappings", ordering="_live")
    def live_mapping_count(self, obj: Any) -> int:
        return int(obj._live)  # annotated by get_queryset


@admin.register(Mapping)
class MappingAdmin(ThroughServicesAdmin):
    form = MappingForm
    # Who (role) first, then which jobs, then the state: the question the list answers.
    list_display = (
        "name",
        "role_short",
        "project_shown",
        "ref",
        "ref_type",
        "protected",
        "environment",
        "sources",
        "issuer",
        "enabled",
        "expires",
        "warnings",
    )
    list_filter = ("issuer", "role__account", ("role", RoleFilter), "enabled", ExpiredFilter, "ref_type", "protected")
    list_select_related = ("issuer", "role__account")
    search_fields = (
        "name",
        "project",
        "=project_id",
        "=namespace_id",
        "ref",
        "environment",
        "role__name",
        "role__account__name",
    )
    fieldsets = (
        (None, {"fields": ("name", "issuer", "role", "enabled", "expires_at")}),
        (
            "Which jobs (IAM StringLike patterns: '*' any run of characters, '/' included; '?' one character)",
            {"fields": ("project", "ref", "ref_type", "protected", "environment", "pipeline_sources")},
        ),
        (
            "Which project and namespace by GitLab's ids, which it never reuses (exact; checked by IAM through "
            "session tags)",
            {"fields": ("project_id", "namespace_id")},
        ),
        (
            "Which pipeline definition, environment and runner (checked by IAM through session tags)",
            {"fields": ("ci_config_ref_uri", "environment_protected", "deployment_tiers", "runner_environment")},
        ),
        ("Which project and namespace (GitLab ids pinned on first use)", {"fields": ("pin_identity",)}),
    )

    readonly_fields = ("lint_warnings",)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        return (
            *fieldsets,
            (
                "Lint warnings (risky but legal; apply --strict refuses them)",
                {"fields": ("lint_warnings",)},
            ),
        )

    def formfield_for_foreignkey(
        self, db_field: Any, request: HttpRequest, **kwargs: Any
    ) -> forms.ModelChoiceField[Any] | None:
        return super().formfield_for_foreignkey(db_field, request, **_with_account(db_field, kwargs))

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        """Lint the page's mappings among all the mappings of their roles, in one pass."""
        changelist = super().get_changelist_instance(request)
        found = _lint_for(mapping.role.arn for mapping in changelist.result_list)
        for mapping in changelist.result_list:
            mapping.lint_warnings_found = found.get(mapping.name, [])
        return changelist

    @admin.display(description="warnings")
    def warnings(self, obj: Mapping) -> str:
        found = getattr(obj, "lint_warnings_found", [])
        if not found:
            return ""
        codes = ", ".join(sorted({w.code for w in found}))
        return format_html(
            '<span class="lint-warning" title="{}">{}</span>', "\n".join(w.message for w in found), codes
        )

    @admin.display(description="lint warnings")
    def lint_warnings(self, obj: Mapping | None) -> str:
        if obj is None or obj.pk is None:
            return "-"
        found = _lint_for([obj.role.arn]).get(obj.name, [])
        if not found:
            return "none"
        return format_html_join(
            "", '<p class="lint-warning"><code>{}</code> {}</p>', ((w.code, w.message) for w in found)
        )

    @admin.display(description="role", ordering="role__name")
    def role_short(self, obj: Mapping) -> SafeString:
        """account/name, the ARN on hover: the full ARN would push the state columns off screen."""
        return format_html('<span title="{}">{}</span>', obj.role.arn, obj.role)

    @admin.display(description="project", ordering="project")
    def project_shown(self, obj: Mapping) -> str:
        """The pattern, and the ids that bind it (GitLab never reuses them)."""
        ids = [f"{name} {value}" for name in ("project_id", "namespace_id") if (value := getattr(obj, name))]
        return f"{obj.project} ({', '.join(ids)})" if ids else obj.project

    @admin.display(description="pipeline sources")
    def sources(self, obj: Mapping) -> str:
        return ", ".join(obj.pipeline_sources) or "any"

    @admin.display(description="expires", ordering="expires_at")
    def expires(self, obj: Mapping) -> str:
        if obj.expires_at is None:
            return "never"
        when = timezone.localtime(obj.expires_at).strftime("%Y-%m-%d %H:%M %Z")
        if obj.is_expired:
            return format_html('<strong style="color:#ba2121">expired</strong> {}', when)
        return when


def _lint_for(role_arns: Iterable[str]) -> dict[str, list[lint.Warning]]:
    """Lint warnings by mapping name for the mappings of these roles (the registry snapshot)."""
    registry = selectors.registry()
    rules = [rule for arn in sorted(set(role_arns)) for rule in registry.rules_for_role(arn)]
    return lint.by_mapping(lint.lint(rules, timezone.now()))


@admin.register(RetiredRole)
class RetiredRoleAdmin(ReadOnlyAdmin):
    """IAM roles Rolegate no longer manages whose trust policy the next sync empties."""

    list_display = ("account_id", "role_name", "created_at", "last_error")
    search_fields = ("account_id", "role_name")


@admin.register(SessionRevocation)
class SessionRevocationAdmin(ReadOnlyAdmin):
    """Every revocation of a role's live sessions: who, when, which role, the cut-off, why."""

    list_display = ("requested_at", "role_label", "cutoff", "actor", "reason", "applied_at", "last_error")
    list_filter = ("applied_at",)
    search_fields = ("role_label", "actor", "reason")
