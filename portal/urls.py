from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView


def healthz(request):
    return HttpResponse("ok", content_type="text/plain")


admin.site.site_header = "Rolegate"
admin.site.site_title = "Rolegate"
admin.site.index_title = "Who can assume what"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("", include("console.urls")),
    path("admin/rolegate/", include("console.admin_urls")),
    path("admin/", admin.site.urls),
    path("", include("exchange.urls")),
]
