"""One place that turns errors into API responses.

The exchange speaks OAuth 2.0 (RFC 6749 §5.2 / RFC 8693 §2.2.2): ``{"error", "error_description",
"request_id"}``. Domain code raises :class:`ApiError` (or a subclass); views never build error
JSON by hand.
"""

from __future__ import annotations

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class ApiError(Exception):
    """A client-visible error: an OAuth-style ``code``, a sentence, an HTTP status."""

    def __init__(self, code: str, description: str, *, status_code: int = 400, headers: dict[str, str] | None = None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.status_code = status_code
        self.headers = headers or {}


def error_body(code: str, description: str, request_id: str | None) -> dict:
    return {"error": code, "error_description": description, "request_id": request_id}


def _request_id(context) -> str | None:
    request = context.get("request") if context else None
    return getattr(request, "request_id", None) if request is not None else None


def exception_handler(exc, context):
    request_id = _request_id(context)
    if isinstance(exc, ApiError):
        return Response(error_body(exc.code, exc.description, request_id), status=exc.status_code, headers=exc.headers)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        code = "unauthorized"
    elif isinstance(exc, exceptions.PermissionDenied):
        code = "forbidden"
    elif isinstance(exc, exceptions.MethodNotAllowed):
        code = "invalid_request"
    elif isinstance(exc, exceptions.Throttled):
        code = "slow_down"
    elif response.status_code == status.HTTP_404_NOT_FOUND:
        code = "not_found"
    else:
        code = "invalid_request"
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    description = detail if isinstance(detail, str) else validation_sentence(detail)
    response.data = error_body(code, str(description), request_id)
    return response


def validation_sentence(detail: object) -> str:
    """Validation errors as one sentence: ``field: message; other: message``."""
    if isinstance(detail, dict):
        return "; ".join(f"{key}: {validation_sentence(value)}" for key, value in detail.items())
    if isinstance(detail, list):
        return " ".join(validation_sentence(item) for item in detail)
    return str(detail)
