"""Verifying GitLab CI ID tokens: registered issuers only, their keys via OIDC discovery.

The keys come from :mod:`exchange.jwks`: fetched with a total deadline, cached in every process
and shared between processes (the Django cache). A token whose ``kid`` is not cached makes one
refresh of that issuer's JWKS: single-flight across processes and at most one attempt every
``ROLEGATE_JWKS_MIN_REFRESH_SECONDS`` (default 30), so a key GitLab publishes is accepted within
that time while a flood of junk kids costs GitLab one request per interval. When GitLab is down
the cached keys keep serving, in a process started during the outage too.
The algorithm comes from our allow-list, never from the token's header; ``jku``/``x5u``/``jwk``
headers are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from django.conf import settings
from django.views.decorators.debug import sensitive_variables
from jwt.types import Options

from exchange import jwks, reasons
from exchange.jwks import forget_cached_keys as forget_cached_keys
from exchange.jwks import refresh_interval as refresh_interval
from mappings.claims import (
    BY_NAME,
    ENUMERATED,
    FORBIDDEN_IN_STRINGS,
    NO_COLON,
    NUMBER_RANGE,
    NUMBERS,
    OPTIONAL_STRINGS,
    REQUIRED_BY_PYJWT,
    REQUIRED_STRINGS,
)
from mappings.matching import RegisteredIssuer

ALLOWED_ALGORITHMS = jwks.ALLOWED_ALGORITHMS
MAX_KEY_AGE = jwks.MAX_KEY_AGE
MAX_TOKEN_CHARS = 16 * 1024


class TokenRejected(Exception):
    """The subject token is not acceptable (OAuth ``invalid_grant``); ``reason`` is the audit code."""

    def __init__(self, reason: str, description: str, *, verified: VerifiedToken | None = None):
        super().__init__(description)
        self.reason = reason
        self.description = description
        # Set when the signature verified but a claim check failed: the claims are the issuer's word.
        self.verified = verified


@dataclass(frozen=True)
class VerifiedToken:
    issuer: RegisteredIssuer
    claims: dict[str, Any]


@dataclass(frozen=True)
class ReadToken:
    """A compact JWS read, not verified (:func:`read_token`): what it says, and its text to verify."""

    text: str = field(repr=False)  # never in a repr, a log line or an error page
    header: dict[str, Any]
    claims: dict[str, Any]


@sensitive_variables("token")
def read_token(token: str) -> ReadToken:
    """The token's header and claims, not verified; :class:`TokenRejected` (``malformed_token``)
    if it is not a compact JWS of two JSON objects. Depends on nothing but the token."""
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
    return ReadToken(text=token, header=header, claims=payload)


def _issuer_for(iss: object, issuers: Mapping[str, RegisteredIssuer]) -> RegisteredIssuer:
    if not isinstance(iss, str) or not iss:
        raise TokenRejected(reasons.MISSING_CLAIM, "The subject token has no iss claim (string).")
    issuer = issuers.get(iss)
    if issuer is None:
        raise TokenRejected(
            reasons.UNKNOWN_ISSUER, f"The subject token's issuer {iss[:200]!r} is not registered with Rolegate."
        )
    return issuer


def signing_key(issuer: RegisteredIssuer, kid: str) -> jwt.PyJWK:
    """The issuer's key ``kid`` from :mod:`exchange.jwks` (cached, refreshed at most once per
    :func:`refresh_interval`), or the refusal naming why there is none."""
    try:
        found = jwks.signing_key(issuer, kid)
    except jwks.KeysUnavailable as exc:
        raise TokenRejected(reasons.JWKS_UNAVAILABLE, str(exc)) from None
    if found is None:
        raise TokenRejected(
            reasons.UNKNOWN_KID, f"The subject token's kid {kid[:80]!r} is not among issuer {issuer.name!r}'s keys."
        )
    return found


def _check_numbers(claims: Mapping[str, object]) -> None:
    """The catalogue's NUMBER claims (exp, iat, nbf) are finite numbers in ``NUMBER_RANGE``:
    checked before PyJWT or Rolegate do time arithmetic with them (``int(inf)`` raises
    OverflowError, ``exp`` = 10**400 overflows a float)."""
    low, high = NUMBER_RANGE
    for name in NUMBERS:
        if name not in claims:
            continue
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TokenRejected(reasons.INVALID_CLAIM, f"The subject token's {name} claim must be a number.")
        if (isinstance(value, float) and not math.isfinite(value)) or not low <= value <= high:
            raise TokenRejected(
                reasons.INVALID_CLAIM, f"The subject token's {name} claim must be a time between {low} and {high}."
            )


def _is_text(value: str) -> bool:
    """No NUL, no lone surrogate: text every database can hold as is."""
    if not FORBIDDEN_IN_STRINGS.isdisjoint(value):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_claims(claims: Mapping[str, object]) -> None:
    """The catalogue's checks (``mappings.claims``) that PyJWT does not make."""
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
        if not _is_text(value):
            raise TokenRejected(
                reasons.INVALID_CLAIM,
                f"The subject token's {name} claim contains a NUL character or is not valid Unicode text.",
            )
    for name in ENUMERATED:
        allowed = BY_NAME[name].values
        if claims.get(name) not in allowed:
            raise TokenRejected(
                reasons.INVALID_CLAIM,
                f"The subject token's {name} claim must be the string " + " or ".join(f'"{v}"' for v in allowed) + ".",
            )
    for name in NO_COLON:
        if ":" in str(claims[name]):  # a string: checked above
            raise TokenRejected(
                reasons.INVALID_CLAIM,
                f"The subject token's {name} claim contains ':', which would make its sub ambiguous.",
            )


# jwt.decode's options: the signature (PyJWS, before any claim), then the registered claims'
# checks. Not iss: the issuer was found by this very iss (_issuer_for, an exact match), so
# PyJWT's comparison with its URL could never fail.
_SIGNATURE_AND_REGISTERED_CLAIMS: Options = {
    "verify_signature": True,
    "verify_exp": True,
    "verify_nbf": True,
    "verify_iat": True,
    "verify_aud": True,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
    "require": list(REQUIRED_BY_PYJWT),
}


def _signature_refusal(exc: jwt.InvalidTokenError, issuer: RegisteredIssuer) -> TokenRejected:
    if isinstance(exc, jwt.InvalidSignatureError):
        return TokenRejected(
            reasons.BAD_SIGNATURE, f"The subject token's signature does not verify with issuer {issuer.name!r}'s key."
        )
    return TokenRejected(reasons.MALFORMED_TOKEN, "The subject token is not a well-formed JWT.")


@sensitive_variables()
def verify_id_token(token: str, *, issuers: Mapping[str, RegisteredIssuer]) -> VerifiedToken:
    """Verify a GitLab CI ID token (:func:`read_token`, then :func:`verify_read_token`); raises
    :class:`TokenRejected` naming the failed check."""
    return verify_read_token(read_token(token), issuers=issuers)


@sensitive_variables()
def verify_read_token(read: ReadToken, *, issuers: Mapping[str, RegisteredIssuer]) -> VerifiedToken:
    """Verify a GitLab CI ID token already read; raises :class:`TokenRejected` naming the failed check.

    ``issuers`` are the registered issuers by URL, from the registry snapshot the caller decides
    with (``mappings.selectors.registry().issuers_by_url``).

    The checks decide as if made in this order: the signature (PyJWS), the catalogue's type and
    range checks of the time claims, PyJWT's checks of the registered claims (exp, nbf, iat, aud;
    ``iss`` found the issuer), then the catalogue's string checks. A claim refused after the
    signature verified is the issuer's word (``TokenRejected.verified``). The signature and
    PyJWT's checks are one ``jwt.decode`` (one parse of the token besides :func:`read_token`'s,
    one RSA verification), which verifies the signature before any claim; the time claims'
    checks, which must come before PyJWT computes with them, run before it, and when they refuse,
    the signature is verified on its own to tell a forgery (``bad_signature``) from the issuer's
    word. Common case: two parses of the token and one RSA verification, where there were three
    and one.
    """
    token, header, unverified = read.text, read.header, read.claims
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
        _check_numbers(unverified)
    except TokenRejected as rejected:  # refused as the issuer's word only if the issuer signed it
        try:
            jwt.api_jws.decode_complete(token, key=key.key, algorithms=list(ALLOWED_ALGORITHMS))
        except jwt.InvalidTokenError as exc:
            raise _signature_refusal(exc, issuer) from None
        rejected.verified = VerifiedToken(issuer=issuer, claims=unverified)
        raise
    try:  # the payload verified here is the one read_token() read: the same text
        claims = jwt.decode(
            token,
            key=key.key,
            algorithms=list(ALLOWED_ALGORITHMS),
            options=_SIGNATURE_AND_REGISTERED_CLAIMS,
            audience=list(issuer.audiences),
            leeway=settings.ROLEGATE_CLOCK_LEEWAY,
        )
    except jwt.InvalidSignatureError as exc:
        raise _signature_refusal(exc, issuer) from None
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
    except jwt.InvalidIssuedAtError as exc:
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
