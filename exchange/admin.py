"""Read-only admin of Rolegate's signing keys: kid, state and dates, never the private part."""

from django.contrib import admin

from exchange.models import SigningKey
from portal.admin import ReadOnlyAdmin


@admin.register(SigningKey)
class SigningKeyAdmin(ReadOnlyAdmin):
    list_display = ("kid", "state", "created_at", "activates_at", "activated_at", "retires_at", "retired_at")
    list_filter = ("state",)
    search_fields = ("kid",)
    fields = (
        "kid",
        "state",
        "public_jwk",
        "created_at",
        "activates_at",
        "activated_at",
        "deactivated_at",
        "retires_at",
        "retired_at",
    )
    readonly_fields = fields
