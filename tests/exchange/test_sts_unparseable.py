"""STS answering a body botocore cannot parse is STS failing (503), not a server error."""

from __future__ import annotations

from exchange import aws_sts
from exchange.models import AuditEvent
from tests.chaos.stand_ins import GarbageServer
from tests.exchange import cases
from tests.exchange.conftest import exchange_params, post_form


def test_an_unparseable_sts_answer_is_503_with_its_audit_event(api, registry, stand_in, web_main_claims, monkeypatch):
    server = GarbageServer(status=500)
    try:
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", server.url)
        aws_sts.reset_client()
        token = stand_in.mint(stand_in.claims(web_main_claims))
        response = post_form(api, "/api/v1/credentials", exchange_params(token, cases.DEPLOY_WEB))
    finally:
        server.stop()
        aws_sts.reset_client()
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert "ResponseParserError" in response.json()["error_description"]
    event = AuditEvent.objects.get(request_id=response["X-Request-ID"])
    assert (event.outcome, event.reason) == ("denied", "sts_unavailable")
    assert server.hits >= 1
