"""The exchange endpoints' own path through Django (docs/architecture.md, "The hot path").

``POST /api/v1/token`` and ``/api/v1/credentials`` are a machine API: a CI job's client sends a
form or JSON body and reads JSON back. Nothing of the browser-facing middleware below this one
applies to them -- no session, no cookie, no login or its lockout (django-axes), no CSRF (the
views are exempt: no cookie authenticates them), no messages, no HTML to load assets for or to
frame. :class:`ExchangeApiMiddleware`, placed right after Django's ``SecurityMiddleware`` (HTTPS
redirect, HSTS, ``nosniff``), answers them itself with the views the URLconf names, so a request
no longer passes through those layers and the URL resolver on the way in and out (about a tenth
of the exchange's own time, docs/architecture.md). What those layers contributed that still
matters is kept here: the ``Host`` header is validated against ``DJANGO_ALLOWED_HOSTS`` (as
``CommonMiddleware`` did), and the response says it is not to be framed or to load anything
(:data:`HEADERS`: the strictest policy, right for a JSON answer).
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.handlers.exception import response_for_exception
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.urls import resolve, reverse

# The exchange endpoints, by their names in exchange/urls.py.
ROUTES = ("token-exchange", "credentials")

# A JSON answer loads nothing and is framed by nothing (what CSPMiddleware and
# XFrameOptionsMiddleware would add, at their strictest).
HEADERS = {"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'", "X-Frame-Options": "DENY"}


class ExchangeApiMiddleware:
    """Answer the exchange endpoints with their views; everything else passes through."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        # The paths and views as the URLconf has them (the OpenAPI document reads it too).
        self.views: dict[str, Callable[[HttpRequest], HttpResponseBase]] = {
            path: resolve(path).func for path in (reverse(name) for name in ROUTES)
        }

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        view = self.views.get(request.path_info)
        if view is None:
            return self.get_response(request)
        try:
            request.get_host()  # DisallowedHost (400) for a Host DJANGO_ALLOWED_HOSTS refuses
            response: HttpResponseBase = view(request)
        except Exception as exc:  # what Django's handler makes of it (a 400, a 500), with HEADERS
            response = response_for_exception(request, exc)
        for name, value in HEADERS.items():
            response[name] = value
        if isinstance(response, HttpResponse):  # as CommonMiddleware sets it: no chunked encoding
            response["Content-Length"] = str(len(response.content))
        return response
