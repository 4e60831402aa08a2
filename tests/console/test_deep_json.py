"""JSON nested too deeply for the decoder is a 400, not a 500 (found in review)."""

from __future__ import annotations

import base64
import json

import pytest

from tests.factories import web_main_deploy

pytestmark = pytest.mark.django_db
DEEP = 10_000


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_explain_api_refuses_deep_json_with_400(api):
    web_main_deploy()
    body = '{"issuer": "gitlab-example", "claims": {"project_path": "platform/web", "x": ' + nested(DEEP) + "}}"
    response = api.post("/api/v1/explain", data=body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_request"
    assert "nested too deeply" in response.json()["error_description"]


def test_explain_api_still_reads_moderately_nested_claims(api):
    web_main_deploy()
    body = '{"issuer": "gitlab-example", "claims": {"project_path": "platform/web", "x": ' + nested(50) + "}}"
    assert api.post("/api/v1/explain", data=body, content_type="application/json").status_code == 200


def test_explain_page_refuses_a_pasted_token_with_a_deep_payload_too(admin_client):
    """PyJWT turns the decoder's RecursionError into DecodeError; this pins it."""

    def part(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()

    token = part(json.dumps({"alg": "RS256"})) + "." + part('{"x": ' + nested(DEEP) + "}") + ".c2ln"
    response = admin_client.post(
        "/admin/rolegate/explain/", {"token": token, "ref_type": "branch", "pipeline_source": "push"}
    )
    assert response.status_code == 200
    assert "This is not a readable JWT." in response.content.decode()
