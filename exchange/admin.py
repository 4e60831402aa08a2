"""Read-only admin of Rolegate's signing keys: kid, state and dates, never the private part."""

from django.contrib import admin

from exchange.models import SigningKey


@admin.register(SigningKey)
class SigningKeyAdmin(admin.ModelAdmin):
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

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
