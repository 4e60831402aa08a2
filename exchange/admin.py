"""Read-only admin of Rolegate's signing keys: kid, state and dates, never the private part."""

from django.contrib import admin

from exchange.models import SigningKey


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the service only (keys, audit events): viewable, never added, changed or
    deleted from the admin, not even by a superuser."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


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
