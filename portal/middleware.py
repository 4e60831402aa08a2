"""Request ids: every response carries ``X-Request-ID``; the exchange's audit event uses the same id,
and every log line written while the request runs carries it too (portal.log_context)."""

from __future__ import annotations

import uuid

from portal.log_context import request_id_var


class RequestIdMiddleware:
    """Give each request a fresh id (``request.request_id``, uuid4 hex) and echo it in the response.

    The id is ours, never taken from the client: it keys the audit event.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = uuid.uuid4().hex
        token = request_id_var.set(request.request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request.request_id
        return response
