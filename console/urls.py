from django.urls import path

from console import apis, views

urlpatterns = [
    path("api/v1/audit-events/", apis.AuditEventListApi.as_view(), name="api-audit-events"),
    path("api/v1/explain", apis.ExplainApi.as_view(), name="api-explain"),
    path("cli/rolegate-credential-process.py", views.credential_process_script, name="cli-credential-process"),
]
