"""Staff-only admin pages of the console: dashboard, explain/simulate, replay."""

from django.contrib import admin
from django.urls import path

from console import admin_views

urlpatterns = [
    path("dashboard/", admin.site.admin_view(admin_views.dashboard), name="console-dashboard"),
    path("explain/", admin.site.admin_view(admin_views.explain), name="console-explain"),
    path("replay/", admin.site.admin_view(admin_views.replay), name="console-replay"),
]
