from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

admin.site.site_header = "Rolegate"
admin.site.site_title = "Rolegate"
admin.site.index_title = "Who can assume what"

urlpatterns = [
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("", include("console.urls")),
    path("admin/rolegate/", include("console.admin_urls")),
    path("admin/", admin.site.urls),
    # Sign in with GitLab (404 unless ROLEGATE_OIDC_ISSUER is set).
    path("oidc/", include("console.sso.urls")),
    path("", include("exchange.urls")),
]
