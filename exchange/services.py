"""The token exchange (CONTRACT §5-§7), top to bottom.

verify the GitLab token -> decide with THE matcher -> mint -> (STS) -> replay row + audit event in
one transaction -> answer. Every request ends in exactly one audit event, written before the
response; if it cannot be written the request fails with 503 and nothing is handed out.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from exchange import aws_sts, gitlab, keys, reasons
from exchange.audit import audit_record
from exchange.models import UsedToken
from mappings import minted
from mappings.matching import Rule, decide
from mappings.selectors import registry
from portal import metrics
from portal.api_errors import ApiError

logger = logging.getLogger(__name__)

TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"
DEFAULT_DURATION_SECONDS = 3600


class ExchangeError(ApiError):
    """A refused exchange: the OAuth ``code`` for the client and the audit ``reason``."""

    def __init__(self, code: str, reason: str, description: str, *, status_code: int = 400, headers=None):
        super().__init__(code, description, status_code=status_code, headers=headers)
        self.reason = reason


class AuditUnavailable(ApiError):
    def __init__(self):
        metrics.AUDIT_WRITE_FAILURES.inc()
        super().__init__(
            "temporarily_unavailable",
            "The exchange could not record its audit event, so it refuses to answer; try again shortly.",
            status_code=503,
            headers={"Retry-After": "5"},
        )


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    endpoint: str  # "token" or "credentials"
    client_ip: str | None
    user_agent: str
    started: float  # time.perf_counter() when the request arrived


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    expires_in: int
    role_arn: str
    role_session_name: str


@dataclass(frozen=True)
class CredentialsGrant:
    credentials: aws_sts.Credentials


def _latency_ms(ctx: RequestContext) -> float:
    return round((time.perf_counter() - ctx.started) * 1000, 3)


def _audit_denied(ctx: RequestContext, error: ExchangeError, **fields) -> None:
    try:
        with transaction.atomic():
            audit_record(
                request_id=ctx.request_id,
                endpoint=ctx.endpoint,
                outcome="denied",
                reason=error.reason,
                detail=error.description,
                client_ip=ctx.client_ip,
                user_agent=ctx.user_agent,
                latency_ms=_latency_ms(ctx),
                **fields,
            )
    except (DatabaseError, ValueError):  # ValueError: text the database driver cannot encode
        logger.exception("audit event %s could not be written", ctx.request_id)
        raise AuditUnavailable() from None


def exchange_refuse(*, ctx: RequestContext, error: ExchangeError) -> None:
    """Record a request refused before its token was looked at, and raise ``error``."""
    _audit_denied(ctx, error)
    raise error


def client_rate_limit(*, ctx: RequestContext) -> None:
    """At most ``ROLEGATE_RATE_LIMIT`` requests per client IP and minute (0: no limit); a fixed
    window in the cache: global with ``ROLEGATE_CACHE_URL`` (Redis), per process without it."""
    limit = settings.ROLEGATE_RATE_LIMIT
    if not limit:
        return
    window = int(time.time() // 60)
    key = f"rolegate:rate:{ctx.client_ip}:{window}"
    try:
        cache.add(key, 0, timeout=61)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=61)
            count = 1
    except RedisError as exc:  # a shared cache that is down must not stop CI jobs: fail open
        logger.warning("rate limit not applied: the cache is unavailable (%s)", type(exc).__name__)
        return
    if count > limit:
        retry_after = str(60 - int(time.time()) % 60)
        exchange_refuse(
            ctx=ctx,
            error=ExchangeError(
                "slow_down",
                reasons.RATE_LIMITED,
                f"More than {limit} requests a minute from {ctx.client_ip}; retry after {retry_after} seconds.",
                status_code=429,
                headers={"Retry-After": retry_after},
            ),
        )


def _invalid_grant(rejected: gitlab.TokenRejected) -> ExchangeError:
    if rejected.reason == reasons.JWKS_UNAVAILABLE:  # GitLab's outage, not the token's fault
        return ExchangeError(
            "temporarily_unavailable",
            rejected.reason,
            rejected.description,
            status_code=503,
            headers={"Retry-After": str(int(gitlab.REFRESH_INTERVAL))},
        )
    return ExchangeError("invalid_grant", rejected.reason, rejected.description)


def minted_claims(*, rule: Rule, claims: dict, sub: str, jti: str, now: int) -> dict:
    """The claims of the token Rolegate mints (CONTRACT §5, "The minted token")."""
    payload = {
        "iss": settings.ROLEGATE_ISSUER,
        "aud": rule.account_audience,
        "sub": sub,
        "iat": now,
        "nbf": now,
        "exp": now + settings.ROLEGATE_TOKEN_LIFETIME,
        "jti": jti,
    }
    for name in minted.SOURCE_CLAIMS:
        if name in claims:
            payload[name] = claims[name]
    payload["rolegate_mapping"] = rule.name
    if rule.session_tags:
        payload[minted.TAGS_CLAIM] = minted.session_tags_claim(claims, rule.name)
    return payload


def _exchange(
    *, ctx: RequestContext, subject_token: str, audience: str | None, duration_seconds: int | None
) -> TokenGrant | CredentialsGrant:
    audit_fields: dict = {"requested_role_arn": audience}
    try:
        snapshot = registry()
        try:
            verified = gitlab.verify_id_token(subject_token, snapshot=snapshot)
        except gitlab.TokenRejected as rejected:
            if rejected.verified is not None:
                audit_fields.update(
                    claims=rejected.verified.claims, issuer=rejected.verified.issuer.name, token_verified=True
                )
            else:
                with contextlib.suppress(gitlab.TokenRejected):
                    audit_fields["claims"] = gitlab.unverified_parts(subject_token)[1]
            raise _invalid_grant(rejected) from None
        claims = verified.claims
        audit_fields.update(claims=claims, issuer=verified.issuer.name, token_verified=True)

        now = timezone.now()
        decision = decide(snapshot, issuer=verified.issuer.name, claims=claims, now=now, role_arn=audience)
        if not decision.granted or decision.rule is None:
            raise ExchangeError("invalid_target", decision.reason, decision.detail)
        rule = decision.rule
        audit_fields.update(role_arn=rule.role_arn, mapping=rule.name)

        sub = decision.sub  # decide() built it and checked its length
        if duration_seconds is not None and duration_seconds > rule.max_session_seconds:
            raise ExchangeError(
                "invalid_target",
                reasons.INVALID_DURATION,
                f"duration_seconds {duration_seconds} is more than {rule.role_name}'s maximum "
                f"session of {rule.max_session_seconds} seconds.",
            )
        session_name = minted.role_session_name(claims["project_id"], claims["job_id"])
        jti = keys.new_jti()
        issued_at = int(time.time())
        try:
            token = keys.sign(minted_claims(rule=rule, claims=claims, sub=sub, jti=jti, now=issued_at))
        except keys.SigningKeyError as exc:
            logger.error("exchange %s cannot sign: %s", ctx.request_id, exc)
            raise ExchangeError(
                "temporarily_unavailable",
                reasons.SIGNING_KEY_UNAVAILABLE,
                "Rolegate cannot use its signing key right now; the operators have been told. Try again later.",
                status_code=503,
                headers={"Retry-After": "60"},
            ) from None
        audit_fields.update(minted_jti=jti, role_session_name=session_name)
        # Keep the replay row while the token could be accepted (a year at most: exp is the token's word).
        expires = min(float(claims["exp"]) + settings.ROLEGATE_CLOCK_LEEWAY, issued_at + 366 * 86400)
        expires_at = datetime.fromtimestamp(expires, tz=UTC)

        stage = "replay"
        try:
            with transaction.atomic():
                UsedToken.objects.create(
                    issuer=verified.issuer.name, jti=claims["jti"], role_arn=rule.role_arn, expires_at=expires_at
                )
                stage = "sts"
                result: TokenGrant | CredentialsGrant
                if ctx.endpoint == "credentials":
                    result = CredentialsGrant(
                        _assume_role(
                            rule=rule,
                            session_name=session_name,
                            token=token,
                            duration_seconds=duration_seconds or _default_duration(rule),
                        )
                    )
                else:
                    result = TokenGrant(
                        access_token=token,
                        expires_in=settings.ROLEGATE_TOKEN_LIFETIME,
                        role_arn=rule.role_arn,
                        role_session_name=session_name,
                    )
                stage = "audit"
                audit_record(
                    request_id=ctx.request_id,
                    endpoint=ctx.endpoint,
                    outcome="granted",
                    reason=reasons.GRANTED,
                    detail=decision.detail,
                    client_ip=ctx.client_ip,
                    user_agent=ctx.user_agent,
                    latency_ms=_latency_ms(ctx),
                    **audit_fields,
                )
        except IntegrityError:
            if stage != "replay":
                logger.exception("audit event %s could not be written", ctx.request_id)
                raise AuditUnavailable() from None
            raise ExchangeError(
                "invalid_grant",
                reasons.REPLAY,
                f"This subject token (jti {claims['jti'][:80]!r}) was already exchanged for {rule.role_arn}.",
            ) from None
        except (DatabaseError, ValueError):  # ValueError: text the database driver cannot encode
            logger.exception("audit event %s could not be written", ctx.request_id)
            raise AuditUnavailable() from None
        return result
    except ExchangeError as error:
        audit_fields.pop("minted_jti", None)
        _audit_denied(ctx, error, **audit_fields)
        raise
    except DatabaseError:  # the registry or issuers could not be read: nothing can be audited either
        logger.exception("exchange %s failed on the database", ctx.request_id)
        raise AuditUnavailable() from None


def _default_duration(rule: Rule) -> int:
    """STS's own default (one hour), or the role's maximum when that is shorter."""
    return min(DEFAULT_DURATION_SECONDS, rule.max_session_seconds)


def _assume_role(*, rule: Rule, session_name: str, token: str, duration_seconds: int) -> aws_sts.Credentials:
    try:
        return aws_sts.assume_role_with_web_identity(
            role_arn=rule.role_arn,
            role_session_name=session_name,
            web_identity_token=token,
            duration_seconds=duration_seconds,
        )
    except aws_sts.StsRefused as exc:
        raise ExchangeError(
            "invalid_target",
            reasons.STS_REFUSED,
            f"AWS STS refused AssumeRoleWithWebIdentity for {rule.role_arn}: {exc.code}.",
        ) from None
    except aws_sts.StsUnavailable as exc:
        raise ExchangeError(
            "temporarily_unavailable",
            reasons.STS_UNAVAILABLE,
            f"AWS STS could not be reached or failed ({exc}); try again shortly.",
            status_code=503,
            headers={"Retry-After": "5"},
        ) from None


def token_exchange(*, ctx: RequestContext, subject_token: str, audience: str | None) -> TokenGrant:
    """CONTRACT §5: a GitLab ID token in, a Rolegate-signed token for one role out."""
    result = _exchange(ctx=ctx, subject_token=subject_token, audience=audience, duration_seconds=None)
    assert isinstance(result, TokenGrant)
    return result


def credentials_exchange(
    *, ctx: RequestContext, subject_token: str, audience: str | None, duration_seconds: int | None
) -> aws_sts.Credentials:
    """CONTRACT §6: a GitLab ID token in, temporary AWS credentials for one role out."""
    result = _exchange(ctx=ctx, subject_token=subject_token, audience=audience, duration_seconds=duration_seconds)
    assert isinstance(result, CredentialsGrant)
    return result.credentials


def used_tokens_prune(*, now: datetime | None = None) -> int:
    """Delete replay rows of tokens that have expired (they would be refused anyway)."""
    deleted, _ = UsedToken.objects.filter(expires_at__lt=now or timezone.now()).delete()
    return deleted
