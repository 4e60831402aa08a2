"""Rolegate as an OIDC issuer (docs/api.md#oidc-discovery-and-jwks): discovery and JWKS, public and cacheable."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from exchange import keys
from mappings import minted
from mappings.claims import IN_MINTED_TOKENS

CACHE_SECONDS = 300
MINTED_CLAIMS = [*IN_MINTED_TOKENS, minted.MAPPING_CLAIM, minted.TAGS_CLAIM]


def _public(data: dict[str, object]) -> JsonResponse:
    response = JsonResponse(data)
    response["Cache-Control"] = f"public, max-age={CACHE_SECONDS}"
    response["Access-Control-Allow-Origin"] = "*"
    return response


@csrf_exempt  # public and read-only: any other method is 405, not a CSRF 403
@require_safe  # GET and HEAD
def openid_configuration(request: HttpRequest) -> JsonResponse:
    issuer = settings.ROLEGATE_ISSUER
    return _public(
        {
            "issuer": issuer,
            "jwks_uri": f"{issuer}/.well-known/jwks.json",
            "token_endpoint": f"{issuer}/api/v1/token",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [keys.ALGORITHM],
            "claims_supported": MINTED_CLAIMS,
            "grant_types_supported": ["urn:ietf:params:oauth:grant-type:token-exchange"],
            "token_endpoint_auth_methods_supported": ["none"],
        }
    )


@csrf_exempt
@require_safe  # GET and HEAD
def jwks(request: HttpRequest) -> JsonResponse:
    return _public({"keys": keys.published_keys()})
