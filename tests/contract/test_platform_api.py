"""docs/api.md#audit-trail, docs/environment.md and docs/api.md#platform-api against a live server:
the platform-team API, request ids, hosts."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import requests

from tests.contract.conftest import DEPLOY_WEB, ISSUER_NAME, get

AUDIT_FIELDS = {
    "time",
    "request_id",
    "outcome",
    "reason",
    "detail",
    "client_ip",
    "issuer",
    "jti",
    "sub",
    "project_path",
    "project_id",
    "namespace_path",
    "ref",
    "ref_type",
    "ref_protected",
    "environment",
    "pipeline_source",
    "pipeline_id",
    "job_id",
    "user_login",
    "requested_role_arn",
    "role_arn",
    "mapping",
    "minted_jti",
    "role_session_name",
    "latency_ms",
}


def test_every_response_carries_a_request_id(live):
    responses = [
        get(live, "/healthz"),
        get(live, "/no/such/page"),
        get(live, "/api/v1/no-such-api"),
        get(live, "/api/v1/token"),
        requests.post(f"{live.url}/.well-known/jwks.json", timeout=20),
        get(live, "/api/v1/audit-events/"),
        live.api("POST", "/api/v1/explain", live.staff_token, data="{not json", headers={"Content-Type": "x/y"}),
    ]
    assert [r.status_code for r in responses] == [200, 404, 404, 405, 405, 401, 415]
    ids = [r.headers.get("X-Request-ID") for r in responses]
    assert all(ids) and len(set(ids)) == len(ids)


def test_platform_api_needs_a_staff_token(live):
    for method, path in (("GET", "/api/v1/audit-events/"), ("POST", "/api/v1/explain")):
        assert live.api(method, path).status_code == 401
        assert live.api(method, path, "rg_not-a-real-token").status_code == 401
        assert live.api(method, path, live.plain_token, json={}).status_code == 403


def test_audit_events_newest_first_with_cursor_pagination_and_filters(live, web_main_claims):
    request_ids = []
    for _ in range(3):
        response = live.exchange("/api/v1/token", live.token(web_main_claims, user_login="pager"), DEPLOY_WEB)
        request_ids.append(response.headers["X-Request-ID"])

    first = live.api("GET", "/api/v1/audit-events/?user_login=pager&page_size=2", live.staff_token)
    assert first.status_code == 200
    page = first.json()
    assert page.keys() == {"results", "next"}
    assert [e["request_id"] for e in page["results"]] == request_ids[::-1][:2]
    assert page["results"][0].keys() >= AUDIT_FIELDS
    assert "cursor" in parse_qs(urlsplit(page["next"]).query)
    second = requests.get(page["next"], headers={"Authorization": f"Bearer {live.staff_token}"}, timeout=20).json()
    assert [e["request_id"] for e in second["results"]] == request_ids[:1]
    assert second["next"] is None

    event = page["results"][0]
    for name in ("outcome", "reason", "issuer", "role_arn", "mapping", "project_path", "job_id", "pipeline_id"):
        filtered = live.api("GET", "/api/v1/audit-events/", live.staff_token, params={name: event[name]}).json()
        assert event["request_id"] in {e["request_id"] for e in filtered["results"]}, name
    since = live.api("GET", "/api/v1/audit-events/", live.staff_token, params={"since": event["time"]}).json()
    assert event["request_id"] in {e["request_id"] for e in since["results"]}
    until = live.api("GET", "/api/v1/audit-events/", live.staff_token, params={"until": event["time"]}).json()
    assert event["request_id"] not in {e["request_id"] for e in until["results"]}


def test_bad_query_parameters_are_400_invalid_request(live):
    for params in ({"since": "yesterday"}, {"outcome": "maybe"}, {"cursor": "not-a-cursor"}):
        response = live.api("GET", "/api/v1/audit-events/", live.staff_token, params=params)
        assert response.status_code == 400, (params, response.text)
        body = response.json()
        assert body["error"] == "invalid_request" and body["request_id"] == response.headers["X-Request-ID"]


def test_explain_answers_with_the_contract_fields(live, web_main_claims):
    response = live.api(
        "POST",
        "/api/v1/explain",
        live.staff_token,
        json={"issuer": ISSUER_NAME, "claims": web_main_claims, "role_arn": DEPLOY_WEB},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert {"decision", "mapping", "role_arn", "mappings"} <= body.keys()
    assert (body["decision"], body["mapping"], body["role_arn"]) == ("granted", "web-main-deploy", DEPLOY_WEB)
    for entry in body["mappings"]:
        assert {"name", "role_arn", "matched", "failed"} <= entry.keys()

    denied = live.api(
        "POST",
        "/api/v1/explain",
        live.staff_token,
        json={"issuer": ISSUER_NAME, "claims": {**web_main_claims, "ref": "dev"}, "role_arn": DEPLOY_WEB},
    ).json()
    assert (denied["decision"], denied["mapping"]) == ("denied", None)
    (entry,) = [m for m in denied["mappings"] if m["name"] == "web-main-deploy"]
    assert entry["matched"] is False
    assert {"field": "ref", "pattern": "main", "value": "dev"} in entry["failed"]


def test_explain_says_whether_iam_would_allow_the_minted_token(live, web_main_claims):
    body = live.api(
        "POST",
        "/api/v1/explain",
        live.staff_token,
        json={"issuer": ISSUER_NAME, "claims": web_main_claims, "role_arn": DEPLOY_WEB},
    ).json()
    assert body["iam"]["role_arn"] == DEPLOY_WEB
    assert body["iam"]["allowed"] is True
    assert isinstance(body["iam"]["unchecked"], list)

    nothing = live.api(
        "POST",
        "/api/v1/explain",
        live.staff_token,
        json={"issuer": ISSUER_NAME, "claims": {**web_main_claims, "project_path": "elsewhere/x"}},
    ).json()
    assert nothing["decision"] == "denied" and nothing["iam"] is None


def test_allowed_hosts_default_to_the_issuer_host_and_loopback_names(live):
    port = urlsplit(live.url).port
    for host in ("127.0.0.1", "localhost"):
        assert get(live, "/healthz", headers={"Host": f"{host}:{port}"}).status_code == 200
    refused = get(live, "/.well-known/openid-configuration", headers={"Host": "evil.example"})
    assert refused.status_code == 400


def test_an_http_issuer_with_allow_http_does_not_redirect_to_https(live):
    response = get(live, "/admin/", allow_redirects=False)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login/")
