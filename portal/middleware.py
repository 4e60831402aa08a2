"""Request ids: every response carries ``X-Request-ID``; the exchange's audit event uses the same id."""

from __future__ import annotations

import uuid


class RequestIdMiddleware:
    """Give each request a fresh id (``request.request_id``, uuid4 hex) and echo it in the response.

    The id is ours, never taken from the client: it keys the audit event.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = uuid.uuid4().hex
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response
