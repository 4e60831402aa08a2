"""The token exchange (docs/api.md, "Token exchange" and "Credentials"), top to bottom.

Each endpoint is one service: :func:`token_exchange` or :func:`credentials_exchange` (and
:func:`exchange_refuse` for a request that is not even a POST). A request goes through named
steps: admit (rate limit, the view's validation, the GitLab token read: one that is not a JWT
is refused at once) -> verify it (and the project's rate limit) -> decide with THE matcher ->
mint -> pin (a pinning mapping's first use only) -> record (the registry still at the
snapshot's version, replay row, the answer, the audit event, all or nothing) -> answer. It
decides on the process's registry snapshot without reading the version first: when the record
(or, for a refusal, one read) finds that the registry moved, nothing is written or answered and
the request decides again on the current registry (:func:`_exchange`). Every request ends in
exactly one audit event, written before the response; if it cannot be written the request fails
with 503 and nothing is handed out.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from redis.exceptions import RedisError

from exchange import aws_sts, gitlab, keys, reasons
from exchange.audit import audit_count_refusal, audit_record, audit_record_spending
from exchange.models import UsedToken
from mappings import minted, pins
from mappings.aws_errors import AwsPermanentError, AwsTransientError
from mappings.claims import COPIED
from mappings.matching import Pin, Registry, Rule, decide, identity_changed_detail
from mappings.selectors import RegistryAt, RegistryMoved, registry_cached, registry_refreshed, registry_still_at
from portal import metrics
from portal.api_errors import ApiError

logger = logging.getLogger(__name__)

TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"
DEFAULT_DURATION_SECONDS = 3600
AWS_RETRY_AFTER = "5"


class ExchangeError(ApiError):
    """A refused exchange: the OAuth ``code`` for the client and the audit ``reason``.

    ``before_token``: refused before a subject token was read (rate limited, wrong method, a body
    that cannot be read or names no token): counted in its client's aggregate event rather than
    an event of its own (``exchange.audit.audit_count_refusal``)."""

    def __init__(
        self,
        code: str,
        reason: str,
        description: str,
        *,
        status_code: int = 400,
        headers: dict[str, str] | None = None,
        before_token: bool = False,
    ) -> None:
        super().__init__(code, description, status_code=status_code, headers=headers)
        self.reason = reason
        self.before_token = before_token


class AuditUnavailable(ApiError):
    def __init__(self) -> None:
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
class ExchangeRequest:
    """What the client asks, as the view validated it."""

    subject_token: str = field(repr=False)  # never in a repr, a log line or an error page
    audience: str | None
    duration_seconds: int | None = None


@dataclass(frozen=True)
class TokenGrant:
    access_token: str = field(repr=False)
    expires_in: int
    role_arn: str
    role_session_name: str


Grant = TypeVar("Grant")


@dataclass(frozen=True)
class _Granted:
    """What the matcher granted: the rule and the minted token's ``sub``."""

    rule: Rule
    sub: str
    detail: str
    new_pins: tuple[Pin, ...] = ()  # first use of a pinning mapping: the ids to pin


@dataclass(frozen=True)
class _Minted:
    """Rolegate's token for the grant: its claims and key (``signer``), signed when the answer is
    built (:func:`_record_at_once` signs while its statement is on the database)."""

    signer: keys.Signer = field(repr=False)
    jti: str
    role_session_name: str
    issued_at: int


@dataclass
class _Trail:
    """What the request's audit event says, filled in as each step learns it."""

    requested_role_arn: str | None
    claims: dict[str, Any] | None = None
    issuer: str | None = None
    token_verified: bool = False
    role_arn: str | None = None
    mapping: str | None = None
    role_session_name: str | None = None
    minted_jti: str | None = None  # only a granted event names the token it handed out

    def fields(self, *, granted: bool) -> dict[str, Any]:
        return {
            "requested_role_arn": self.requested_role_arn,
            "claims": self.claims,
            "issuer": self.issuer,
            "token_verified": self.token_verified,
            "role_arn": self.role_arn,
            "mapping": self.mapping,
            "role_session_name": self.role_session_name,
            "minted_jti": self.minted_jti if granted else None,
        }


# --- the services ------------------------------------------------------------------------------


@sensitive_variables()
def token_exchange(*, ctx: RequestContext, request: ExchangeRequest | ExchangeError) -> TokenGrant:
    """A GitLab ID token in, a Rolegate-signed token for one role out (docs/api.md, "Token
    exchange"). ``request`` is what the view validated, or the refusal it found."""

    @sensitive_variables()
    def answer(granted: _Granted, token: _Minted) -> TokenGrant:
        return TokenGrant(
            access_token=token.signer.token(),
            expires_in=settings.ROLEGATE_TOKEN_LIFETIME,
            role_arn=granted.rule.role_arn,
            role_session_name=token.role_session_name,
        )

    return _exchange(ctx=ctx, request=request, answer=answer, record=_record_at_once)


@sensitive_variables()
def credentials_exchange(*, ctx: RequestContext, request: ExchangeRequest | ExchangeError) -> aws_sts.Credentials:
    """A GitLab ID token in, temporary AWS credentials for one role out (docs/api.md,
    "Credentials"): the minted token goes to STS ``AssumeRoleWithWebIdentity``."""

    @sensitive_variables()
    def answer(granted: _Granted, token: _Minted) -> aws_sts.Credentials:
        assert isinstance(request, ExchangeRequest)
        rule = granted.rule
        return _assume_role(
            rule=rule,
            session_name=token.role_session_name,
            token=token.signer.token(),
            duration_seconds=request.duration_seconds or _default_duration(rule),
        )

    return _exchange(ctx=ctx, request=request, answer=answer, record=_record)


def exchange_refuse(*, ctx: RequestContext, error: ExchangeError) -> NoReturn:
    """Record a request refused before its token was looked at, and raise ``error``: in its
    client's aggregate event when no token was read (``error.before_token``), else its own."""
    if error.before_token:
        _audit_counted(ctx, error)
    else:
        _audit_denied(ctx, error, _Trail(requested_role_arn=None))
    raise error


def used_tokens_prune(*, now: datetime | None = None) -> int:
    """Delete replay rows of tokens that have expired (they would be refused anyway)."""
    deleted, _ = UsedToken.objects.filter(expires_at__lt=now or timezone.now()).delete()
    return deleted


# --- the steps ---------------------------------------------------------------------------------


# How many times one request may decide: on the process's snapshot, then on the current registry
# each time the registry moved under the decision; the last time read first and unguarded.
ATTEMPTS = 3

_Record = Callable[
    [
        RequestContext,
        gitlab.VerifiedToken,
        _Granted,
        _Minted,
        _Trail,
        Callable[[_Granted, _Minted], Grant],
        RegistryAt | None,
    ],
    Grant,
]


@dataclass
class _Admitted:
    """A request past its client's rate limit and the view's checks: the client counter it was
    counted in (:func:`_rate_limit`), its subject token read (once a request, however many times
    it decides), and whether its project's limit was applied yet (once a request too)."""

    request: ExchangeRequest
    counted: str | None
    read: gitlab.ReadToken = field(repr=False)
    project_limited: bool = False


@sensitive_variables()
def _exchange(
    *,
    ctx: RequestContext,
    request: ExchangeRequest | ExchangeError,
    answer: Callable[[_Granted, _Minted], Grant],
    record: _Record[Grant],
) -> Grant:
    """Optimistic: decide on the process's registry snapshot without asking whether it is current,
    and commit only if it still is (docs/architecture.md, "The hot path"). When the registry moved
    under a decision -- a grant's record finds another version, a refusal's check does, or this
    request pinned identities -- nothing was written or answered: decide again on the current
    registry. The last of :data:`ATTEMPTS` reads the registry first and records unguarded (what
    every request did before), so a registry that never stops moving still gets an answer."""
    admitted = _admit(ctx, request)
    try:
        snapshot, at = registry_cached()
        for _ in range(ATTEMPTS - 1):
            try:
                return _attempt(ctx, admitted, snapshot, at, answer, record)
            except RegistryMoved:
                metrics.EXCHANGE_REDECISIONS.labels(endpoint=ctx.endpoint).inc()
                snapshot, at = registry_refreshed(at)
        return _attempt(ctx, admitted, snapshot, None, answer, record)
    except DatabaseError:  # the registry could not be read: nothing can be audited either
        logger.exception("exchange %s failed on the database", ctx.request_id)
        raise AuditUnavailable() from None


@sensitive_variables()
def _attempt(
    ctx: RequestContext,
    admitted: _Admitted,
    snapshot: Registry,
    at: RegistryAt | None,
    answer: Callable[[_Granted, _Minted], Grant],
    record: _Record[Grant],
) -> Grant:
    """One decision on ``snapshot``, read at ``at`` (``None``: read just now, and final): verify ->
    project rate limit -> decide -> mint -> pin -> record. Raises :class:`RegistryMoved`, having
    written and answered nothing, when the registry is no longer at ``at``."""
    request = admitted.request
    trail = _Trail(requested_role_arn=request.audience, claims=admitted.read.claims)
    try:
        with _decided_on(at):
            verified = _verify(admitted.read, snapshot, trail)
        if not admitted.project_limited:
            admitted.project_limited = True
            _project_rate_limit(verified, admitted.counted)
        with _decided_on(at):
            granted = _decide(snapshot, verified, request, trail)
        token = _mint(ctx, granted, verified.claims, trail)
        if granted.new_pins:
            with _decided_on(at):
                _pin(granted)
            if at is not None:  # the pins are in the registry now, not in this snapshot
                raise RegistryMoved
        return record(ctx, verified, granted, token, trail, answer, at)
    except ExchangeError as error:
        _audit_denied(ctx, error, trail)
        raise


@contextlib.contextmanager
def _decided_on(at: RegistryAt | None) -> Iterator[None]:
    """Around a step that decides from the snapshot read at ``at``: a refusal stands only if the
    registry is still there (one primary-key read); otherwise it is :class:`RegistryMoved` and the
    request decides again. ``None``: the snapshot was read just before, the refusal stands."""
    try:
        yield
    except ExchangeError:
        registry_still_at(at)
        raise


@sensitive_variables()
def _admit(ctx: RequestContext, request: ExchangeRequest | ExchangeError) -> _Admitted:
    """The client's rate limit first, then the view's verdict on the request, then the GitLab
    token's header and claims, not verified yet: a token that is not a JWT is refused here, once,
    before anything that depends on the registry (its refusal needs no check that the registry
    is still where the snapshot was read)."""
    counted = _rate_limit(ctx)
    if isinstance(request, ExchangeError):
        exchange_refuse(ctx=ctx, error=request)
    try:
        read = gitlab.read_token(request.subject_token)
    except gitlab.TokenRejected as rejected:
        error = _invalid_grant(rejected)
        _audit_denied(ctx, error, _Trail(requested_role_arn=request.audience))
        raise error from None
    return _Admitted(request=request, counted=counted, read=read)


def client_bucket(client_ip: str | None) -> str:
    """Whom the rate limit counts: an IPv4 address, the ``/ROLEGATE_RATE_LIMIT_IPV6_PREFIX``
    network of an IPv6 one (``2001:db8:1:2::/64``), ``unknown`` without an address."""
    if client_ip is None:
        return "unknown"
    address = ipaddress.ip_address(client_ip)
    if address.version == 6:
        return str(ipaddress.ip_network((address, settings.ROLEGATE_RATE_LIMIT_IPV6_PREFIX), strict=False))
    return str(address)


def _window() -> int:
    return int(time.time() // 60)


def _retry_after() -> str:
    return str(60 - int(time.time()) % 60)


def _count(key: str) -> int | None:
    """Add one to the counter ``key`` of this minute's window; ``None`` when the cache is down
    (a shared cache that is down must not stop CI jobs: the limits fail open)."""
    try:
        cache.add(key, 0, timeout=61)
        try:
            return cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=61)
            return 1
    except RedisError as exc:
        logger.warning("rate limit not applied: the cache is unavailable (%s)", type(exc).__name__)
        return None


def _uncount(key: str) -> None:
    with contextlib.suppress(RedisError, ValueError):
        cache.decr(key)


def _client_key(ctx: RequestContext) -> str:
    return f"rolegate:rate:{client_bucket(ctx.client_ip)}:{_window()}"


def _rate_limit(ctx: RequestContext) -> str | None:
    """At most ``ROLEGATE_RATE_LIMIT`` requests per client (:func:`client_bucket`) and minute (0:
    no limit); a fixed window in the cache: global with ``ROLEGATE_CACHE_URL`` (Redis), per
    process without it. A request whose token verifies and whose project is within its own
    limit is given back (:func:`_project_rate_limit`): the client limit holds back junk, not CI
    jobs sharing one address. Returns the key of the counter it added to (``None``: no limit, or
    the cache is down and nothing was counted), so that the give-back reaches that counter, not
    the next minute's."""
    limit = settings.ROLEGATE_RATE_LIMIT
    if not limit:
        return None
    key = _client_key(ctx)
    count = _count(key)
    if count is not None and count > limit:
        retry_after = _retry_after()
        exchange_refuse(
            ctx=ctx,
            error=ExchangeError(
                "slow_down",
                reasons.RATE_LIMITED,
                f"More than {limit} requests a minute from {client_bucket(ctx.client_ip)}; "
                f"retry after {retry_after} seconds.",
                status_code=429,
                headers={"Retry-After": retry_after},
                before_token=True,
            ),
        )
    return key if count is not None else None


def _project_rate_limit(verified: gitlab.VerifiedToken, counted: str | None) -> None:
    """At most ``ROLEGATE_PROJECT_RATE_LIMIT`` verified requests per (issuer, project_id) and
    minute (0: no limit), so a runaway pipeline cannot starve the other projects. A request
    within it no longer counts against its client's address: it is taken off ``counted``."""
    limit = settings.ROLEGATE_PROJECT_RATE_LIMIT
    if limit:
        issuer, project_id = verified.issuer.name, verified.claims["project_id"]
        count = _count(f"rolegate:project-rate:{issuer}:{project_id}:{_window()}")
        if count is not None and count > limit:
            retry_after = _retry_after()
            raise ExchangeError(
                "slow_down",
                reasons.PROJECT_RATE_LIMITED,
                f"More than {limit} requests a minute for project {project_id} of issuer {issuer}; "
                f"retry after {retry_after} seconds.",
                status_code=429,
                headers={"Retry-After": retry_after},
            )
    if counted is not None:
        _uncount(counted)


@sensitive_variables()
def _verify(read: gitlab.ReadToken, snapshot: Registry, trail: _Trail) -> gitlab.VerifiedToken:
    """The GitLab token, verified against the issuers of ``snapshot``."""
    try:
        verified = gitlab.verify_read_token(read, issuers=snapshot.issuers_by_url)
    except gitlab.TokenRejected as rejected:
        if rejected.verified is not None:  # signed by the issuer; a claim check failed
            trail.claims, trail.issuer = rejected.verified.claims, rejected.verified.issuer.name
            trail.token_verified = True
        raise _invalid_grant(rejected) from None
    trail.claims, trail.issuer, trail.token_verified = verified.claims, verified.issuer.name, True
    return verified


def _invalid_grant(rejected: gitlab.TokenRejected) -> ExchangeError:
    if rejected.reason == reasons.JWKS_UNAVAILABLE:  # GitLab's outage, not the token's fault
        return ExchangeError(
            "temporarily_unavailable",
            rejected.reason,
            rejected.description,
            status_code=503,
            headers={"Retry-After": str(gitlab.refresh_interval())},
        )
    return ExchangeError("invalid_grant", rejected.reason, rejected.description)


def _decide(snapshot: Registry, verified: gitlab.VerifiedToken, request: ExchangeRequest, trail: _Trail) -> _Granted:
    """THE matcher's decision, then the role's limit on the session asked for."""
    decision = decide(
        snapshot,
        issuer=verified.issuer.name,
        claims=verified.claims,
        now=timezone.now(),
        role_arn=request.audience,
        explain=False,  # the audit keeps the claims; the explain page evaluates every candidate again
    )
    if not decision.granted or decision.rule is None or decision.sub is None:
        raise ExchangeError("invalid_target", decision.reason, decision.detail)
    rule = decision.rule
    trail.role_arn, trail.mapping = rule.role_arn, rule.name
    duration = request.duration_seconds
    if duration is not None and duration > rule.max_session_seconds:
        raise ExchangeError(
            "invalid_target",
            reasons.INVALID_DURATION,
            f"duration_seconds {duration} is more than {rule.role_name}'s maximum "
            f"session of {rule.max_session_seconds} seconds.",
        )
    # decide() checked the sub's length
    return _Granted(rule=rule, sub=decision.sub, detail=decision.detail, new_pins=decision.new_pins)


def _pin(granted: _Granted) -> None:
    """A pinning mapping's first grant for a path records its ids (docs/trust-model.md#identity-pins),
    before anything is handed out (only called with ``granted.new_pins``; once pinned, the
    snapshot holds the pins). Another process may have pinned the path to another id since this
    one's snapshot: then the token is refused like any later one."""
    conflicts = pins.pins_record(granted.new_pins)
    if conflicts:
        detail = identity_changed_detail(granted.rule, conflicts)
        raise ExchangeError("invalid_target", reasons.IDENTITY_CHANGED, detail)


def minted_claims(*, rule: Rule, claims: dict[str, Any], sub: str, jti: str, now: int) -> dict[str, Any]:
    """The claims of the token Rolegate mints (docs/api.md, "The minted token")."""
    payload = {
        "iss": settings.ROLEGATE_ISSUER,
        "aud": rule.account_audience,
        "sub": sub,
        "iat": now,
        "nbf": now,
        "exp": now + settings.ROLEGATE_TOKEN_LIFETIME,
        "jti": jti,
    }
    for name in COPIED:
        if name in claims:
            payload[name] = claims[name]
    payload[minted.MAPPING_CLAIM] = rule.name
    if rule.session_tags:
        payload[minted.TAGS_CLAIM] = minted.session_tags_claim(claims, rule.name)
    if rule.account_source_identity:
        source_identity = minted.source_identity(claims)
        if source_identity is not None:
            payload[minted.SOURCE_IDENTITY_CLAIM] = source_identity
    return payload


@sensitive_variables()
def _mint(ctx: RequestContext, granted: _Granted, claims: dict[str, Any], trail: _Trail) -> _Minted:
    """Rolegate's token for the granted role, to be signed with the current key: the key is taken
    now (a key that cannot be used refuses the request here, before anything is written)."""
    session_name = minted.role_session_name(claims["project_id"], claims["job_id"])
    jti = keys.new_jti()
    issued_at = int(time.time())
    payload = minted_claims(rule=granted.rule, claims=claims, sub=granted.sub, jti=jti, now=issued_at)
    try:
        signer = keys.Signer(payload)
    except keys.SigningKeyError as exc:
        logger.error("exchange %s cannot sign: %s", ctx.request_id, exc)
        raise ExchangeError(
            "temporarily_unavailable",
            reasons.SIGNING_KEY_UNAVAILABLE,
            "Rolegate cannot use its signing key right now; the operators have been told. Try again later.",
            status_code=503,
            headers={"Retry-After": "60"},
        ) from None
    trail.minted_jti, trail.role_session_name = jti, session_name
    return _Minted(signer=signer, jti=jti, role_session_name=session_name, issued_at=issued_at)


@sensitive_variables()
def _record(
    ctx: RequestContext,
    verified: gitlab.VerifiedToken,
    granted: _Granted,
    token: _Minted,
    trail: _Trail,
    answer: Callable[[_Granted, _Minted], Grant],
    registry_at: RegistryAt | None,
) -> Grant:
    """Spend the subject token, build the answer and write the granted event, all or nothing:
    a refused answer (STS) or an event that cannot be written leaves the token unspent. First,
    in the transaction, the registry must still be at ``registry_at`` (``None``: not checked):
    no STS call on a decision the registry has moved away from."""
    with _audit_or_unavailable(ctx), transaction.atomic():
        registry_still_at(registry_at)
        _spend(verified, granted.rule, token)
        result = answer(granted, token)
        _audit_granted(ctx, granted, trail)
    return result


@sensitive_variables()
def _record_at_once(
    ctx: RequestContext,
    verified: gitlab.VerifiedToken,
    granted: _Granted,
    token: _Minted,
    trail: _Trail,
    answer: Callable[[_Granted, _Minted], Grant],
    registry_at: RegistryAt | None,
) -> Grant:
    """For an answer that calls nobody (the token endpoint): the check that the registry is still
    at ``registry_at``, the replay row and the granted event in one statement
    (:func:`exchange.audit.audit_record_spending`), the answer -- the token's signature -- built
    while the database works on it: one database round trip, no transaction, the same
    all-or-nothing as :func:`_record`. The answer is handed out only after the statement."""
    with _audit_or_unavailable(ctx):
        event, result = audit_record_spending(
            used=_used_token(verified, granted.rule, token),
            registry_at=registry_at,
            meanwhile=lambda: answer(granted, token),
            **_granted_fields(ctx, granted, trail),
        )
    if event is None:
        raise _replay(verified, granted.rule)
    return result


@sensitive_variables()
def _spend(verified: gitlab.VerifiedToken, rule: Rule, token: _Minted) -> None:
    """The replay row: a subject token (iss + jti) is exchanged at most once for each role."""
    try:
        _used_token(verified, rule, token).save(force_insert=True)
    except IntegrityError:
        raise _replay(verified, rule) from None


def _used_token(verified: gitlab.VerifiedToken, rule: Rule, token: _Minted) -> UsedToken:
    claims = verified.claims
    # Keep the row while the token could be accepted (a year at most: exp is the token's word).
    expires = min(float(claims["exp"]) + settings.ROLEGATE_CLOCK_LEEWAY, token.issued_at + 366 * 86400)
    return UsedToken(
        issuer=verified.issuer.name,
        jti=claims["jti"],
        role_arn=rule.role_arn,
        expires_at=datetime.fromtimestamp(expires, tz=UTC),
    )


def _replay(verified: gitlab.VerifiedToken, rule: Rule) -> ExchangeError:
    return ExchangeError(
        "invalid_grant",
        reasons.REPLAY,
        f"This subject token (jti {verified.claims['jti'][:80]!r}) was already exchanged for {rule.role_arn}.",
    )


def _default_duration(rule: Rule) -> int:
    """STS's own default (one hour), or the role's maximum when that is shorter."""
    return min(DEFAULT_DURATION_SECONDS, rule.max_session_seconds)


@sensitive_variables()
def _assume_role(*, rule: Rule, session_name: str, token: str, duration_seconds: int) -> aws_sts.Credentials:
    try:
        return aws_sts.assume_role_with_web_identity(
            role_arn=rule.role_arn,
            role_session_name=session_name,
            web_identity_token=token,
            duration_seconds=duration_seconds,
        )
    except AwsPermanentError as exc:
        raise ExchangeError(
            "invalid_target",
            reasons.STS_REFUSED,
            f"AWS STS refused AssumeRoleWithWebIdentity for {rule.role_arn}: {exc.code}.",
        ) from None
    except AwsTransientError as exc:
        raise ExchangeError(
            "temporarily_unavailable",
            reasons.STS_UNAVAILABLE,
            f"AWS STS could not be reached or failed ({exc.code}); try again shortly.",
            status_code=503,
            headers={"Retry-After": AWS_RETRY_AFTER},
        ) from None


def _granted_fields(ctx: RequestContext, granted: _Granted, trail: _Trail) -> dict[str, Any]:
    return {
        "request_id": ctx.request_id,
        "endpoint": ctx.endpoint,
        "outcome": "granted",
        "reason": reasons.GRANTED,
        "detail": granted.detail,
        "client_ip": ctx.client_ip,
        "user_agent": ctx.user_agent,
        "latency_ms": _latency_ms(ctx),
        **trail.fields(granted=True),
    }


def _audit_granted(ctx: RequestContext, granted: _Granted, trail: _Trail) -> None:
    with _audit_or_unavailable(ctx):
        audit_record(**_granted_fields(ctx, granted, trail))


def _audit_denied(ctx: RequestContext, error: ExchangeError, trail: _Trail) -> None:
    # One INSERT, in autocommit: its own transaction (a refusal costs no BEGIN/COMMIT round trips).
    with _audit_or_unavailable(ctx):
        audit_record(
            request_id=ctx.request_id,
            endpoint=ctx.endpoint,
            outcome="denied",
            reason=error.reason,
            detail=error.description,
            client_ip=ctx.client_ip,
            user_agent=ctx.user_agent,
            latency_ms=_latency_ms(ctx),
            **trail.fields(granted=False),
        )


def _audit_counted(ctx: RequestContext, error: ExchangeError) -> None:
    with _audit_or_unavailable(ctx):
        audit_count_refusal(
            client=client_bucket(ctx.client_ip),
            request_id=ctx.request_id,
            endpoint=ctx.endpoint,
            reason=error.reason,
            detail=error.description,
            client_ip=ctx.client_ip,
            user_agent=ctx.user_agent,
            latency_ms=_latency_ms(ctx),
        )


@contextlib.contextmanager
def _audit_or_unavailable(ctx: RequestContext) -> Iterator[None]:
    """Around every audit write: a failure fails the request closed (503), logged with its id."""
    try:
        yield
    except (DatabaseError, ValueError):  # ValueError: text the database driver cannot encode
        logger.exception("audit event %s could not be written", ctx.request_id)
        raise AuditUnavailable() from None


def _latency_ms(ctx: RequestContext) -> float:
    return round((time.perf_counter() - ctx.started) * 1000, 3)
