"""Admin building blocks shared by every app (``portal`` is the bottom layer: any app may use them)."""

from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the service only (keys, audit events, retired roles): viewable, never added,
    changed or deleted from the admin, not even by a superuser."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
