"""``GET /metrics``, answered before host validation and HTTPS redirects, like the probes:
Prometheus scrapes each pod by its address over plain http, a Host ``DJANGO_ALLOWED_HOSTS``
rightly refuses everywhere else. Access is ``portal.metrics.scrape_access``'s decision."""

from __future__ import annotations

from django.http import HttpResponse

from console.metrics.collector import DatabaseCollector
from portal import metrics

PATH = "/metrics"


def metrics_response(request) -> HttpResponse:
    access = metrics.scrape_access(
        remote_addr=request.META.get("REMOTE_ADDR"), authorization=request.META.get("HTTP_AUTHORIZATION")
    )
    refusal = metrics.scrape_refusal(access)
    if refusal is not None:
        status, text, headers = refusal
        return HttpResponse(text, status=status, content_type="text/plain", headers=headers)
    body, content_type = metrics.exposition([DatabaseCollector()])
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response


class MetricsMiddleware:
    """Answer GET/HEAD ``/metrics``; everything else passes through."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info == PATH and request.method in ("GET", "HEAD"):
            return metrics_response(request)
        return self.get_response(request)
