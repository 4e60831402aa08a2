"""The exchange endpoints are described in the OpenAPI schema."""

from __future__ import annotations

import yaml

from tests.exchange.cases import DEPLOY_WEB
from tests.exchange.conftest import exchange_params, post_form


def test_schema_describes_the_exchange(api, db):
    response = api.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    for path, operation_id, success in (
        ("/api/v1/token", "token_exchange", "access_token"),
        ("/api/v1/credentials", "credentials_exchange", "AccessKeyId"),
    ):
        # The statuses the endpoint answers (docs/api.md): STS failing is a 503 too, never a 502.
        operation = schema["paths"][path]["post"]
        assert operation["operationId"] == operation_id
        assert set(operation["requestBody"]["content"]) == {"application/x-www-form-urlencoded", "application/json"}
        ok = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        assert success in schema["components"]["schemas"][ok]["properties"]
        assert set(operation["responses"]) == {"200", "400", "405", "429", "503"}
        assert set(schema["paths"][path]) == {"post"}


JSON_TYPES = {"string": str, "integer": int}


def _conforms(body: dict, schema: dict, component: str) -> None:
    """The answer has exactly the component's properties, each of its JSON type."""
    properties = schema["components"]["schemas"][component]["properties"]
    assert set(body) == set(properties)
    for name, spec in properties.items():
        assert type(body[name]) is JSON_TYPES[spec["type"]], (name, body[name])


def test_the_answers_are_the_documented_ones(api, registry, stand_in, web_main_claims, sts):
    """The views answer plain dicts; the schema's serializers must still describe them."""
    schema = yaml.safe_load(api.get("/api/schema/").content)
    token = post_form(
        api, "/api/v1/token", exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), DEPLOY_WEB)
    )
    assert token.status_code == 200, token.content
    _conforms(token.json(), schema, "TokenExchangeResponse")
    params = exchange_params(stand_in.mint(stand_in.claims(web_main_claims)), DEPLOY_WEB)
    credentials = post_form(api, "/api/v1/credentials", params)
    assert credentials.status_code == 200, credentials.content
    _conforms(credentials.json(), schema, "CredentialProcessOutput")
