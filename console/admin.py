"""The console in the admin: API tokens, and the read-only audit log with CSV/JSONL export."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Count
from django.http import HttpResponseBadRequest, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from console.models import ApiToken
from console.services import api_token_create, api_token_revoke, api_token_update
from exchange.audit import write_csv, write_jsonl
from exchange.models import AuditEvent
from exchange.safe_text import visible
from mappings.claims import AUDITED
from mappings.models import Mapping, Role
from portal.admin import ReadOnlyAdmin

EXPORT_BATCH = 1000
# The audit log's value filters list the values seen recently, most frequent first: a DISTINCT
# over the whole (large, append-only) table on every changelist load would not scale.
FILTER_WINDOW = timedelta(days=30)
FILTER_CHOICES = 25


def recent_values_filter(field: str, label: str) -> type[admin.SimpleListFilter]:
    class RecentValuesFilter(admin.SimpleListFilter):
        title = label
        parameter_name = field

        def lookups(self, request, model_admin):
            since = timezone.now() - FILTER_WINDOW
            rows = (
                AuditEvent.objects.filter(time__gte=since)
                .exclude(**{f"{field}__isnull": True})
                .values_list(field)
                .annotate(n=Count("id"))
                .order_by("-n", field)[:FILTER_CHOICES]
            )
            values = [value for value, _ in rows]
            current = self.value()
            if current and current not in values:
                values.append(current)  # a filter from a link stays visible even if older
            return [(value, visible(value)) for value in values]

        def queryset(self, request, queryset):
            value = self.value()
            return queryset.filter(**{field: value}) if value else queryset

    RecentValuesFilter.__name__ = f"Recent{field.title().replace('_', '')}Filter"
    return RecentValuesFilter


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "name", "user", "created_at", "last_used_at", "expires_at", "revoked")
    list_filter = ("revoked",)
    search_fields = ("name", "prefix", "user__username")
    actions = ["revoke_selected"]
    readonly_fields = ("prefix", "created_at", "last_used_at")

    def get_queryset(self, request):
        """A superuser sees every token; other staff only their own."""
        qs = super().get_queryset(request).select_related("user")
        return qs if request.user.is_superuser else qs.filter(user=request.user)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user":
            users = get_user_model().objects.filter(is_active=True, is_staff=True)
            kwargs["queryset"] = users if request.user.is_superuser else users.filter(pk=request.user.pk)
            kwargs.setdefault("initial", request.user.pk)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("user", "name", "expires_at")
        return ("user", "name", "prefix", "created_at", "last_used_at", "expires_at", "revoked")

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "user") if obj is not None else ()

    def save_model(self, request, obj, form, change):
        if change:
            api_token_update(
                token=obj, name=obj.name, expires_at=obj.expires_at, revoked=form.cleaned_data.get("revoked", False)
            )
            return
        token, raw = api_token_create(user=obj.user, name=obj.name, expires_at=obj.expires_at)
        obj.pk = token.pk
        obj.prefix = token.prefix
        request._rolegate_new_api_token = raw  # shown once by response_add, never stored

    def response_add(self, request, obj, post_url_continue=None):
        raw = getattr(request, "_rolegate_new_api_token", None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": "API token created",
            "token": obj,
            "raw_token": raw,
            "opts": self.opts,
            "changelist_url": reverse("admin:console_apitoken_changelist"),
        }
        response = TemplateResponse(request, "console/api_token_created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke the selected tokens")
    def revoke_selected(self, request, queryset):
        for token in queryset.filter(revoked=False):
            api_token_revoke(token=token)
        self.message_user(request, "Revoked.", messages.SUCCESS)


def _role_for_arn(arn: str | None) -> Role | None:
    """The registry role an ARN names, if it still exists."""
    if not arn or ":role/" not in arn:
        return None
    parts = arn.split(":")
    if len(parts) < 6:
        return None
    return Role.objects.filter(account__account_id=parts[4], name=arn.split(":role/", 1)[1]).first()


def _admin_link(obj, label: str) -> str:
    if obj is None:
        return label or "—"
    try:
        url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return label
    return format_html('<a href="{}">{}</a>', url, label)


def _csv_chunks(events) -> Iterator[str]:
    """``write_csv`` in batches: the header once, then rows, streamed."""
    batch: list[AuditEvent] = []
    first = True

    def flush():
        buffer = io.StringIO()
        write_csv(batch, buffer)
        text = buffer.getvalue()
        return text if first else text.split("\r\n", 1)[1]

    for event in events:
        batch.append(event)
        if len(batch) >= EXPORT_BATCH:
            yield flush()
            batch, first = [], False
    if batch or first:
        yield flush()


def _jsonl_chunks(events) -> Iterator[str]:
    batch: list[AuditEvent] = []
    for event in events:
        batch.append(event)
        if len(batch) >= EXPORT_BATCH:
            buffer = io.StringIO()
            write_jsonl(batch, buffer)
            yield buffer.getvalue()
            batch = []
    buffer = io.StringIO()
    write_jsonl(batch, buffer)
    yield buffer.getvalue()


# Every text column of an event may hold attacker-chosen claim text (any presented token's): the
# admin shows it through visible(), so control and bidi characters appear as escapes.
_TEXT_FIELDS = frozenset(f.name for f in AuditEvent._meta.fields if isinstance(f, models.CharField | models.TextField))


def _shown(name: str) -> str:
    """The admin column of field ``name``: its visible() display method for text fields."""
    return f"{name}_shown" if name in _TEXT_FIELDS else name


def _visible_column(name: str):
    verbose_name = next(field.verbose_name for field in AuditEvent._meta.fields if field.name == name)

    @admin.display(description=verbose_name, ordering=name)
    def column(self, obj: AuditEvent):
        return visible(getattr(obj, name))

    column.__name__ = _shown(name)
    return column


class VisibleColumns:
    """The display methods, one per text field (``project_path_shown``, ...), set just below."""


for _name in _TEXT_FIELDS:
    setattr(VisibleColumns, _shown(_name), _visible_column(_name))


@admin.register(AuditEvent)
class AuditEventAdmin(VisibleColumns, ReadOnlyAdmin):
    """Read-only for everyone: events are evidence."""

    # What was decided, for which job, and which role; the issuer and the rest are filters and detail.
    list_display = ("when", "decision", _shown("project_path"), _shown("ref"), "role", "mapping", _shown("job_id"))
    list_filter = (
        "outcome",
        recent_values_filter("reason", "reason"),
        recent_values_filter("issuer", "issuer"),
        recent_values_filter("role_arn", "role"),
        recent_values_filter("mapping", "mapping"),
        recent_values_filter("project_path", "project"),
        "endpoint",
    )
    search_fields = ("=project_path", "=job_id", "=pipeline_id", "=user_login", "=request_id")
    search_help_text = "Exact project path, job id, pipeline id, user login or request id."
    date_hierarchy = "time"
    ordering = ("-time", "-id")
    list_per_page = 100
    show_full_result_count = False
    change_list_template = "console/auditevent_change_list.html"
    fieldsets = tuple(
        (title, {"fields": tuple(_shown(name) for name in names)})
        for title, names in (
            ("Decision", ("time", "outcome", "reason", "detail", "endpoint", "request_id", "latency_ms")),
            ("Role", ("requested_role_arn", "role_arn", "role_link", "mapping", "mapping_link", "explain_link")),
            ("Minted", ("minted_jti", "role_session_name")),
            ("Job (claims of the presented token)", ("token_verified", "issuer", *AUDITED)),
            ("Client", ("client_ip", "user_agent")),
        )
    )

    def get_readonly_fields(self, request, obj=None):
        return [_shown(f.name) for f in AuditEvent._meta.fields] + ["role_link", "mapping_link", "explain_link"]

    @admin.display(description="time (UTC)", ordering="time")
    def when(self, obj: AuditEvent) -> str:
        return timezone.localtime(obj.time).strftime("%Y-%m-%d %H:%M:%S")

    @admin.display(description="decision", ordering="outcome")
    def decision(self, obj: AuditEvent) -> str:
        if obj.outcome == AuditEvent.Outcome.GRANTED:
            return format_html('<span style="color:#2e7d32">{}</span>', obj.outcome)
        return format_html('<strong style="color:#ba2121">{}</strong>: {}', obj.outcome, obj.reason)

    @admin.display(description="role (account id/name)")
    def role(self, obj: AuditEvent) -> str:
        arn = obj.role_arn or obj.requested_role_arn
        if not arn:
            return "—"
        return visible(arn.removeprefix("arn:aws:iam::").replace(":role/", "/"))

    @admin.display(description="role in the registry")
    def role_link(self, obj: AuditEvent) -> str:
        role = _role_for_arn(obj.role_arn or obj.requested_role_arn)
        return _admin_link(role, str(role) if role else "not in the registry")

    @admin.display(description="mapping in the registry")
    def mapping_link(self, obj: AuditEvent) -> str:
        mapping = Mapping.objects.filter(name=obj.mapping).first() if obj.mapping else None
        return _admin_link(mapping, mapping.name if mapping else "—")

    @admin.display(description="with today's mappings")
    def explain_link(self, obj: AuditEvent) -> str:
        if not obj.issuer or not obj.project_path:
            return "—"
        params = {
            "issuer": obj.issuer,
            "project_path": obj.project_path,
            "project_id": obj.project_id or "",
            "namespace_id": obj.namespace_id or "",
            "ref": obj.ref or "",
            "ref_type": obj.ref_type or "branch",
            "protected": "on" if obj.ref_protected == "true" else "",
            "environment": obj.environment or "",
            "pipeline_source": obj.pipeline_source or "",
            "role_arn": obj.requested_role_arn or "",
        }
        url = reverse("console-explain") + "?" + urlencode({k: v for k, v in params.items() if v})
        return format_html('<a href="{}" id="explain-event">Explain this job against the current mappings</a>', url)

    def get_urls(self):
        urls = [
            path("export/csv/", self.admin_site.admin_view(self.export_csv), name="exchange_auditevent_export_csv"),
            path(
                "export/jsonl/", self.admin_site.admin_view(self.export_jsonl), name="exchange_auditevent_export_jsonl"
            ),
        ]
        return urls + super().get_urls()

    def _filtered(self, request):
        """The events of the changelist as filtered and searched now (every page)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        return changelist.get_queryset(request).order_by("-time", "-id").iterator(chunk_size=EXPORT_BATCH)

    def _download(self, chunks, content_type: str, extension: str):
        response = StreamingHttpResponse(chunks, content_type=content_type)
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="rolegate-audit-{stamp}.{extension}"'
        response["Cache-Control"] = "no-store"
        return response

    def export_csv(self, request):
        try:
            events = self._filtered(request)
        except IncorrectLookupParameters:
            return HttpResponseBadRequest("Unknown filter in the export URL.", content_type="text/plain")
        return self._download(_csv_chunks(events), "text/csv; charset=utf-8", "csv")

    def export_jsonl(self, request):
        try:
            events = self._filtered(request)
        except IncorrectLookupParameters:
            return HttpResponseBadRequest("Unknown filter in the export URL.", content_type="text/plain")
        return self._download(_jsonl_chunks(events), "application/x-ndjson", "jsonl")
