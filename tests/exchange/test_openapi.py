"""The exchange endpoints are described in the OpenAPI schema."""

from __future__ import annotations

import yaml


def test_schema_describes_the_exchange(api, db):
    response = api.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    for path, operation_id, success in (
        ("/api/v1/token", "token_exchange", "access_token"),
        ("/api/v1/credentials", "credentials_exchange", "AccessKeyId"),
    ):
        operation = schema["paths"][path]["post"]
        assert operation["operationId"] == operation_id
        assert set(operation["requestBody"]["content"]) == {"application/x-www-form-urlencoded", "application/json"}
        ok = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        assert success in schema["components"]["schemas"][ok]["properties"]
        assert "400" in operation["responses"]
        assert set(schema["paths"][path]) == {"post"}
