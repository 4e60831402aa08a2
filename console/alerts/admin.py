"""Alert webhooks (editable by admins) and the problems seen (read-only history)."""

from __future__ import annotations

from django.contrib import admin

from console.alerts.models import AlertWebhook, Problem
from portal.admin import ReadOnlyAdmin


@admin.register(AlertWebhook)
class AlertWebhookAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "enabled", "created_at"]
    list_filter = ["kind", "enabled"]
    fields = ["name", "kind", "url", "enabled"]


@admin.register(Problem)
class ProblemAdmin(ReadOnlyAdmin):
    list_display = ["opened_at", "kind", "subject", "summary", "cleared_at"]
    list_filter = ["kind", ("cleared_at", admin.EmptyFieldListFilter)]
    search_fields = ["key", "subject", "summary"]
