"""Audit reason codes: stable, documented in docs/reasons.md#audit-reason-codes.

Each denial reason belongs to one OAuth error code of docs/reasons.md#oauth-error-codes (the ``error`` of the response);
the audit's ``reason`` says precisely which check failed.
"""

from __future__ import annotations

from mappings import matching

GRANTED = "granted"

# invalid_request: the HTTP request itself.
INVALID_REQUEST = "invalid_request"
METHOD_NOT_ALLOWED = "method_not_allowed"
UNSUPPORTED_GRANT_TYPE = "unsupported_grant_type"
RATE_LIMITED = "rate_limited"
PROJECT_RATE_LIMITED = "project_rate_limited"

# invalid_grant: the subject token.
MALFORMED_TOKEN = "malformed_token"
UNKNOWN_ISSUER = "unknown_issuer"
ALG_NOT_ALLOWED = "alg_not_allowed"
UNKNOWN_KID = "unknown_kid"
JWKS_UNAVAILABLE = "jwks_unavailable"
BAD_SIGNATURE = "bad_signature"
TOKEN_EXPIRED = "token_expired"
TOKEN_NOT_YET_VALID = "token_not_yet_valid"
WRONG_AUDIENCE = "wrong_audience"
MISSING_CLAIM = "missing_claim"
INVALID_CLAIM = "invalid_claim"
REPLAY = "replay"

# invalid_target: the token is fine but no role is granted.
NO_MATCHING_MAPPING = matching.NO_MATCHING_MAPPING
AMBIGUOUS_ROLE = matching.AMBIGUOUS_ROLE
DIRECT_MODE_ACCOUNT = matching.DIRECT_MODE_ACCOUNT
SUB_TOO_LONG = matching.SUB_TOO_LONG
CLAIM_NOT_TAGGABLE = matching.CLAIM_NOT_TAGGABLE
IDENTITY_CHANGED = matching.IDENTITY_CHANGED
INVALID_DURATION = "invalid_duration"
STS_REFUSED = "sts_refused"

# temporarily_unavailable: a dependency of ours failed.
STS_UNAVAILABLE = "sts_unavailable"
SIGNING_KEY_UNAVAILABLE = "signing_key_unavailable"

# reason -> (OAuth error code, HTTP status, meaning). docs/reasons.md's table must list exactly
# these (tests/test_docs.py).
REASONS: dict[str, tuple[str, int, str]] = {
    GRANTED: ("", 200, "The exchange succeeded."),
    INVALID_REQUEST: (
        "invalid_request",
        400,
        "A parameter is missing, duplicated or has an unknown value; "
        "wrong content type; unparseable or too large body.",
    ),
    METHOD_NOT_ALLOWED: ("invalid_request", 405, "A method other than POST."),
    UNSUPPORTED_GRANT_TYPE: ("unsupported_grant_type", 400, "grant_type is not token-exchange."),
    RATE_LIMITED: ("slow_down", 429, "The client IP exceeded ROLEGATE_RATE_LIMIT requests per minute."),
    PROJECT_RATE_LIMITED: (
        "slow_down",
        429,
        "The verified token's project (issuer, project_id) exceeded ROLEGATE_PROJECT_RATE_LIMIT requests per minute.",
    ),
    MALFORMED_TOKEN: ("invalid_grant", 400, "The subject token is not a well-formed JWS compact JWT."),
    UNKNOWN_ISSUER: ("invalid_grant", 400, "Its iss is not a registered issuer (its keys are never fetched)."),
    ALG_NOT_ALLOWED: ("invalid_grant", 400, "Its alg is not RS256 (none and HMAC are always refused)."),
    UNKNOWN_KID: ("invalid_grant", 400, "Its kid is not in the issuer's JWKS, even after a refresh."),
    JWKS_UNAVAILABLE: (
        "temporarily_unavailable",
        503,
        "The issuer's keys could not be fetched and none are cached (Retry-After: 30).",
    ),
    BAD_SIGNATURE: ("invalid_grant", 400, "The signature does not verify with the issuer's key."),
    TOKEN_EXPIRED: ("invalid_grant", 400, "exp is in the past (beyond ROLEGATE_CLOCK_LEEWAY)."),
    TOKEN_NOT_YET_VALID: ("invalid_grant", 400, "nbf or iat is in the future (beyond ROLEGATE_CLOCK_LEEWAY)."),
    WRONG_AUDIENCE: ("invalid_grant", 400, "aud is not one of the issuer's accepted audiences."),
    MISSING_CLAIM: ("invalid_grant", 400, "A claim the exchange needs is absent."),
    INVALID_CLAIM: (
        "invalid_grant",
        400,
        "A claim has the wrong JSON type, an unknown value, is too long, or project_path/ref contains ':'.",
    ),
    REPLAY: ("invalid_grant", 400, "This token (iss + jti) was already exchanged for this role."),
    NO_MATCHING_MAPPING: ("invalid_target", 400, "No enabled, unexpired mapping grants the (requested) role."),
    AMBIGUOUS_ROLE: ("invalid_target", 400, "No audience given and several roles match."),
    DIRECT_MODE_ACCOUNT: ("invalid_target", 400, "The role's account is in direct mode."),
    SUB_TOO_LONG: ("invalid_target", 400, "The minted sub would exceed 255 characters."),
    CLAIM_NOT_TAGGABLE: (
        "invalid_target",
        400,
        "A mapping would grant the role, but a claim it conditions on through a session tag cannot be a tag value "
        "exactly (characters outside AWS's tag set, or over 256), so IAM would refuse the token.",
    ),
    IDENTITY_CHANGED: (
        "invalid_target",
        400,
        "A pinning mapping would grant the role, but the token's project_id (or namespace_id) is not the one pinned "
        "for its path on first use: the path now belongs to another project or namespace.",
    ),
    INVALID_DURATION: ("invalid_target", 400, "duration_seconds is above the role's max_session_seconds."),
    STS_REFUSED: ("invalid_target", 400, "STS refused AssumeRoleWithWebIdentity (its error code is in the detail)."),
    STS_UNAVAILABLE: (
        "temporarily_unavailable",
        503,
        "STS could not be reached, timed out, throttled (429, Throttling, TooManyRequestsException, "
        "RequestTimeout, ...) or failed (5xx) (Retry-After: 5).",
    ),
    SIGNING_KEY_UNAVAILABLE: (
        "temporarily_unavailable",
        503,
        "Rolegate's signing key cannot be decrypted (DJANGO_SECRET_KEY changed; see DJANGO_SECRET_KEY_FALLBACKS).",
    ),
}
