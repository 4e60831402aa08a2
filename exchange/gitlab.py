"""Verifying GitLab CI ID tokens: registered issuers only, their keys via OIDC discovery.

Keys are cached per process and issuer. A token whose ``kid`` is not cached makes one refresh
of that issuer's JWKS: single-flight (a lock per issuer) and at most one attempt every
``ROLEGATE_JWKS_MIN_REFRESH_SECONDS`` (default 30), so a key GitLab publishes is accepted within
that time while a flood of junk kids costs GitLab one request per interval. When GitLab is down
the cached keys keep serving.
The algorithm comes from our allow-list, never from the token's header; ``jku``/``x5u``/``jwk``
headers are ignored.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import jwt
import requests
from django.conf import settings

from exchange import reasons
from exchange.jwks_status import jwks_fetch_recorded
from mappings.claims import (
    BY_NAME,
    ENUMERATED,
    NO_COLON,
    NUMBERS,
    OPTIONAL_STRINGS,
    REQUIRED_BY_PYJWT,
    REQUIRED_STRINGS,
)
from mappings.matching import RegisteredIssuer

logger = logging.getLogger(__name__)

ALLOWED_ALGORITHMS = ("RS256",)
MAX_KEY_AGE = 3600.0  # refresh keys this old on the next request (keeping them if that fails)
FETCH_TIMEOUT = 3.0
MAX_RESPONSE_BYTES = 256 * 1024
MAX_TOKEN_CHARS = 16 * 1024


class TokenRejected(Exception):
    """The subject token is not acceptable (OAuth ``invalid_grant``); ``reason`` is the audit code."""

    def __init__(self, reason: str, description: str, *, verified: VerifiedToken | None = None):
        super().__init__(description)
        self.reason = reason
        self.description = description
        # Set when the signature verified but a claim check failed: the claims are the issuer's word.
        self.verified = verified


class JwksFetchError(Exception):
    pass


@dataclass(frozen=True)
class VerifiedToken:
    issuer: RegisteredIssuer
    claims: dict


@dataclass
class _Keys:
    lock: threading.Lock = field(default_factory=threading.Lock)
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    fetched_at: float = 0.0
    attempted_at: float | None = None


_registry_lock = threading.Lock()
_keys: dict[tuple[str, str | None], _Keys] = {}


def forget_cached_keys() -> None:
    """Drop every cached JWKS (tests)."""
    with _registry_lock:
        _keys.clear()


def unverified_parts(token: str) -> tuple[dict, dict]:
    """Header and payload of a compact JWS, not verified; :class:`TokenRejected` if unreadable."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise TokenRejected(reasons.MALFORMED_TOKEN, "The subject token is not a JWT (empty or too long).")
    try:
        decoded = jwt.api_jwt.decode_complete(token, options={"verify_signature": False})
        header, payload = decoded["header"], decoded["payload"]
    except (jwt.InvalidTokenError, ValueError, TypeError):
        raise TokenRejected(
            reasons.MALFORMED_TOKEN, "The subject token is not a well-formed JWT (header.payload.signature)."
        ) from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise TokenRejected(reasons.MALFORMED_TOKEN, "The subject token's header and payload must be JSON objects.")
    return header, payload


def _issuer_for(iss: object, issuers: Mapping[str, RegisteredIssuer]) -> RegisteredIssuer:
    if not isinstance(iss, str) or not iss:
        raise TokenRejected(reasons.MISSING_CLAIM, "The subject token has no iss claim (string).")
    issuer = issuers.get(iss)
    if issuer is None:
        raise TokenRejected(
            reasons.UNKNOWN_ISSUER, f"The subject token's issuer {iss[:200]!r} is not registered with Rolegate."
        )
    return issuer


def _check_url(url: object) -> str:
    if not isinstance(url, str):
        raise JwksFetchError("jwks_uri is not a string")
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and settings.ROLEGATE_ALLOW_HTTP):
        raise JwksFetchError(f"{url!r} is not an https URL")
    if not parts.hostname:
        raise JwksFetchError(f"{url!r} has no host")
    return url


def _get_json(url: str) -> object:
    """GET ``url`` with bounded time and size; no redirects."""
    try:
        with requests.get(
            _check_url(url),
            timeout=FETCH_TIMEOUT,
            stream=True,
            allow_redirects=False,
            headers={"Accept": "application/json"},
        ) as response:
            if response.status_code != 200:
                raise JwksFetchError(f"{url} answered HTTP {response.status_code}")
            body = b""
            for chunk in response.iter_content(16384):
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise JwksFetchError(f"{url} answered more than {MAX_RESPONSE_BYTES} bytes")
    except requests.RequestException as exc:
        raise JwksFetchError(f"{url}: {type(exc).__name__}") from None
    try:
        return json.loads(body)
    except ValueError:
        raise JwksFetchError(f"{url} did not answer JSON") from None


def fetch_jwks(issuer: RegisteredIssuer) -> dict[str, jwt.PyJWK]:
    """The issuer's RS256 signing keys by kid, via its configured jwks_url or OIDC discovery."""
    jwks_url = issuer.jwks_url
    if not jwks_url:
        discovery = _get_json(f"{issuer.url}/.well-known/openid-configuration")
        if not isinstance(discovery, dict):
            raise JwksFetchError("the discovery document is not a JSON object")
        if discovery.get("issuer") != issuer.url:
            raise JwksFetchError("the discovery document names another issuer")
        jwks_url = discovery.get("jwks_uri")
    document = _get_json(_check_url(jwks_url))
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksFetchError("the JWKS has no keys list")
    keys: dict[str, jwt.PyJWK] = {}
    for item in document["keys"]:
        if not isinstance(item, dict) or item.get("kty") != "RSA" or not isinstance(item.get("kid"), str):
            continue
        if item.get("use", "sig") != "sig" or item.get("alg", "RS256") not in ALLOWED_ALGORITHMS:
            continue
        try:
            keys[item["kid"]] = jwt.PyJWK(item, algorithm="RS256")
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            continue
    return keys


def _entry(issuer: RegisteredIssuer) -> _Keys:
    key = (issuer.url, issuer.jwks_url)
    entry = _keys.get(key)
    if entry is None:
        with _registry_lock:
            entry = _keys.setdefault(key, _Keys())
    return entry


def refresh_interval() -> int:
    """Seconds between two JWKS fetch attempts for one issuer (``ROLEGATE_JWKS_MIN_REFRESH_SECONDS``)."""
    return settings.ROLEGATE_JWKS_MIN_REFRESH_SECONDS


def signing_key(issuer: RegisteredIssuer, kid: str) -> jwt.PyJWK:
    """The issuer's key ``kid``, refreshing the cache at most once per :func:`refresh_interval`."""
    entry = _entry(issuer)
    now = time.time()
    found = entry.keys.get(kid)
    if found is not None and now - entry.fetched_at < MAX_KEY_AGE:
        return found
    with entry.lock:  # single flight: the others wait and then read what it fetched
        now = time.time()
        found = entry.keys.get(kid)
        fresh = now - entry.fetched_at < MAX_KEY_AGE
        if found is not None and fresh:
            return found
        if entry.attempted_at is None or now - entry.attempted_at >= refresh_interval():
            entry.attempted_at = now
            try:
                entry.keys = fetch_jwks(issuer)
                entry.fetched_at = time.time()
            except JwksFetchError as exc:
                logger.warning("JWKS of issuer %s unavailable: %s", issuer.name, exc)
                jwks_fetch_recorded(issuer=issuer.name, error=str(exc))
            else:
                jwks_fetch_recorded(issuer=issuer.name, error=None)
        found = entry.keys.get(kid)
        if found is not None:
            return found
        if not entry.keys:
            raise TokenRejected(
                reasons.JWKS_UNAVAILABLE,
                f"The signing keys of issuer {issuer.name!r} could not be fetched; try again shortly.",
            )
        raise TokenRejected(
            reasons.UNKNOWN_KID, f"The subject token's kid {kid[:80]!r} is not among issuer {issuer.name!r}'s keys."
        )


def _check_claims(claims: Mapping[str, object]) -> None:
    """The catalogue's checks (``mappings.claims``) that PyJWT does not make."""
    for name in NUMBERS:
        if name in claims and (isinstance(claims[name], bool) or not isinstance(claims[name], int | float)):
            raise TokenRejected(reasons.INVALID_CLAIM, f"The subject token's {name} claim must be a number.")
    for name in REQUIRED_STRINGS:
        if name not in claims or claims[name] is None:
            raise TokenRejected(reasons.MISSING_CLAIM, f"The subject token has no {name} claim.")
    for name in (*REQUIRED_STRINGS, *OPTIONAL_STRINGS):
        if name not in claims:
            continue
        value = claims[name]
        if not isinstance(value, str) or not value:
            raise TokenRejected(reasons.INVALID_CLAIM, f"The subject token's {name} claim must be a non-empty string.")
        if len(value) > BY_NAME[name].max_length:
            raise TokenRejected(reasons.INVALID_CLAIM, f"The subject token's {name} claim is too long.")
    for name in ENUMERATED:
        allowed = BY_NAME[name].values
        if claims.get(name) not in allowed:
            raise TokenRejected(
                reasons.INVALID_CLAIM,
                f"The subject token's {name} claim must be the string " + " or ".join(f'"{v}"' for v in allowed) + ".",
            )
    for name in NO_COLON:
        if ":" in claims[name]:
            raise TokenRejected(
                reasons.INVALID_CLAIM,
                f"The subject token's {name} claim contains ':', which would make its sub ambiguous.",
            )


def verify_id_token(token: str, *, issuers: Mapping[str, RegisteredIssuer]) -> VerifiedToken:
    """Verify a GitLab CI ID token; raises :class:`TokenRejected` naming the failed check.

    ``issuers`` are the registered issuers by URL, from the registry snapshot the caller decides
    with (``mappings.selectors.registry().issuers_by_url``).
    """
    header, unverified = unverified_parts(token)
    issuer = _issuer_for(unverified.get("iss"), issuers)
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        raise TokenRejected(
            reasons.ALG_NOT_ALLOWED, f"The subject token's alg {str(alg)[:20]!r} is not allowed (only RS256)."
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenRejected(reasons.UNKNOWN_KID, "The subject token's header has no kid.")
    key = signing_key(issuer, kid)
    try:
        claims = jwt.decode(
            token,
            key=key.key,
            algorithms=list(ALLOWED_ALGORITHMS),
            audience=list(issuer.audiences),
            issuer=issuer.url,
            leeway=settings.ROLEGATE_CLOCK_LEEWAY,
            options={"require": list(REQUIRED_BY_PYJWT), "verify_sub": False, "verify_jti": False},
        )
    except jwt.InvalidSignatureError:
        raise TokenRejected(
            reasons.BAD_SIGNATURE, f"The subject token's signature does not verify with issuer {issuer.name!r}'s key."
        ) from None
    except jwt.ExpiredSignatureError:
        raise TokenRejected(reasons.TOKEN_EXPIRED, "The subject token has expired (exp).") from None
    except jwt.ImmatureSignatureError:
        raise TokenRejected(reasons.TOKEN_NOT_YET_VALID, "The subject token is not valid yet (nbf or iat).") from None
    except jwt.InvalidAudienceError:
        raise TokenRejected(
            reasons.WRONG_AUDIENCE, f"The subject token's aud is not one accepted by issuer {issuer.name!r}."
        ) from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenRejected(reasons.MISSING_CLAIM, f"The subject token has no {exc.claim} claim.") from None
    except jwt.InvalidIssuerError:
        raise TokenRejected(reasons.INVALID_CLAIM, "The subject token's iss does not match its issuer.") from None
    except (jwt.InvalidIssuedAtError, jwt.InvalidAlgorithmError) as exc:
        raise TokenRejected(reasons.INVALID_CLAIM, f"The subject token is invalid: {exc}.") from None
    except jwt.InvalidTokenError:
        raise TokenRejected(reasons.MALFORMED_TOKEN, "The subject token is not a well-formed JWT.") from None
    verified = VerifiedToken(issuer=issuer, claims=claims)
    try:
        _check_claims(claims)
    except TokenRejected as rejected:
        rejected.verified = verified
        raise
    return verified
