"""HTTP API of the exchange (docs/api.md): parse and validate, call one service, serialise.

Bodies are parsed here rather than by DRF's parsers so that a duplicated parameter is refused
(RFC 6749 §3.2) and the size is capped before anything is decoded. A request the view finds
invalid is handed to the service as its refusal, so every refusal, including a 405 or a 429, goes
through the service that records it: in an event of its own when it presented a subject token, in
its client's aggregate event of the minute when it did not (docs/api.md#audit-trail).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn, TypeVar
from urllib.parse import parse_qsl

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from drf_spectacular.utils import extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.validators import ProhibitSurrogateCharactersValidator
from rest_framework.views import APIView

from exchange import reasons, services
from exchange.services import TOKEN_TYPE_JWT, ExchangeError, ExchangeRequest, RequestContext
from portal.api_errors import ApiError, error_body, validation_sentence

GRANT_TYPE_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
SUBJECT_TOKEN_TYPES = (TOKEN_TYPE_JWT, "urn:ietf:params:oauth:token-type:id_token")
MAX_BODY_BYTES = 64 * 1024
MAX_FIELDS = 32
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

ErrorSerializer = inline_serializer(
    name="OAuthError",
    fields={
        "error": serializers.CharField(),
        "error_description": serializers.CharField(),
        "request_id": serializers.CharField(),
    },
)


class _BadRequest(Exception):
    pass


_Value = TypeVar("_Value")


@sensitive_variables()
def _no_duplicates(pairs: Iterable[tuple[str, _Value]]) -> dict[str, _Value]:
    data: dict[str, _Value] = {}
    for key, value in pairs:
        if key in data:
            raise _BadRequest(f"Parameter {key[:60]!r} is given more than once.")
        data[key] = value
    return data


@sensitive_variables()
def parse_body(*, content_type: str, content_length: str | None, read: Callable[[], bytes]) -> dict[str, str]:
    """The request's parameters as a dict; :class:`_BadRequest` with a sentence otherwise."""
    media_type = content_type.split(";")[0].strip().lower()
    if media_type not in (FORM, JSON):
        raise _BadRequest(f"Content-Type must be {FORM} or {JSON}.")
    try:
        length = int(content_length or 0)
    except ValueError:
        raise _BadRequest("Content-Length is not a number.") from None
    if length > MAX_BODY_BYTES:
        raise _BadRequest(f"The body is larger than {MAX_BODY_BYTES} bytes.")
    body = read()
    if len(body) > MAX_BODY_BYTES:
        raise _BadRequest(f"The body is larger than {MAX_BODY_BYTES} bytes.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _BadRequest("The body is not UTF-8.") from None
    if media_type == FORM:
        try:
            pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict")
        except ValueError:
            raise _BadRequest("The form body cannot be parsed (bad encoding or too many fields).") from None
        return _no_duplicates(pairs)
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except ValueError:
        raise _BadRequest("The body is not valid JSON.") from None
    except RecursionError:
        raise _BadRequest("The JSON body is nested too deeply.") from None
    if not isinstance(data, dict):
        raise _BadRequest("The JSON body must be an object.")
    params: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, int) and not isinstance(value, bool) and key == "duration_seconds":
            value = str(value)
        if not isinstance(value, str):
            raise _BadRequest(f"Parameter {key[:60]!r} must be a string.")
        try:
            key.encode("utf-8")
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a "\ud800" escape
            raise _BadRequest(f"Parameter {key[:60]!r} is not valid Unicode text.") from None
        params[key] = value
    return params


def _address(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address, IPv4-mapped IPv6 (``::ffff:1.2.3.4``) as the IPv4 address it maps."""
    try:
        address = ipaddress.ip_address(str(value or "").strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted_proxy(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return any(address in network for network in settings.ROLEGATE_TRUSTED_PROXY_NETWORKS)


def client_ip(meta: Mapping[str, Any]) -> str | None:
    """The client's address for the audit, the rate limit and the console's throttles; ``None``
    when it is not an IP (a unix socket), never a failed audit write. IPv4-mapped IPv6
    addresses are given as IPv4 (docs/operations.md#reverse-proxies-and-client-addresses).

    With ``ROLEGATE_TRUSTED_PROXIES = N`` and a TCP peer in ``ROLEGATE_TRUSTED_PROXY_NETWORKS``,
    X-Forwarded-For is read from the right, at most N entries, while the address that handed
    the request on is a trusted proxy: with N trusted hops, the N-th address from the right (the
    one the outermost proxy saw). The TCP peer when it is not a trusted proxy (a client reaching
    gunicorn directly), when the header is shorter than N or an entry is not an IP.
    """
    peer = _address(meta.get("REMOTE_ADDR"))
    hops = settings.ROLEGATE_TRUSTED_PROXIES
    if peer is None or not hops or not _trusted_proxy(peer):
        return str(peer) if peer is not None else None
    forwarded = [part for part in str(meta.get("HTTP_X_FORWARDED_FOR", "")).split(",") if part.strip()]
    if len(forwarded) < hops:
        return str(peer)
    client = peer
    for entry in reversed(forwarded[-hops:]):
        if not _trusted_proxy(client):  # an untrusted hop: what it says about its client is its word
            break
        found = _address(entry)
        if found is None:
            break
        client = found
    return str(client)


@functools.cache
def _checker(serializer_class: type[serializers.Serializer[Any]]) -> serializers.Serializer[Any]:
    """One instance of an input serializer per process, whose fields check every request:
    ``to_internal_value`` keeps nothing on the instance, where building a serializer for each
    request deep-copies all of its fields (a third of the body's parse in ``make bench``)."""
    return serializer_class()


@sensitive_variables()
def validate(
    serializer_class: type[serializers.Serializer[Any]], params: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """What ``serializer_class(data=params).is_valid()`` decides: the validated data, or ``{}``
    and the errors by field, in DRF's words."""
    try:
        return _checker(serializer_class).to_internal_value(params), None
    except serializers.ValidationError as exc:
        assert isinstance(exc.detail, dict)
        return {}, exc.detail


_RENDERER = JSONRenderer()
_ALWAYS = {"Allow": "POST", "Cache-Control": "no-store", "Pragma": "no-cache"}


@method_decorator(sensitive_post_parameters(), name="dispatch")
class ExchangeApi(APIView):
    """The two exchange endpoints. DRF describes them -- the OpenAPI document reads this class,
    its serializers and ``extend_schema`` -- but :meth:`dispatch` answers them on a short path
    of its own, since they use nothing of DRF's request cycle: no client authentication, no
    permissions or throttles (the service's rate limits), their own body parsing
    (:func:`parse_body`), JSON whatever ``Accept`` says (RFC 6749 §5.1, RFC 8693 §2.2; DRF's
    negotiation would answer ``Accept: text/html`` with a 406 before the view ran, unaudited).
    Every answer is ``no-store``; every refusal has its audit event (the service records it).
    The parameters and the variables holding tokens are sensitive: no error page or report shows
    them (``portal.error_reports``)."""

    authentication_classes = ()
    permission_classes = ()
    parser_classes = ()
    throttle_classes = ()
    renderer_classes = (JSONRenderer,)
    metadata_class = None
    endpoint = ""
    ctx: RequestContext  # set by dispatch, for post

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """POST goes to :meth:`post`, any other method is refused (405); an :class:`ApiError`
        becomes the contract's error body (``portal.api_errors``); anything else propagates to
        Django's 500 handling, as it would through DRF."""
        self.ctx = ctx = RequestContext(
            request_id=getattr(request, "request_id", None) or uuid.uuid4().hex,
            endpoint=self.endpoint,
            client_ip=client_ip(request.META),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
            started=time.perf_counter(),
        )
        try:
            if request.method != "POST":
                _method_not_allowed(ctx, request.method)
            status, data, headers = 200, self.post(request), _ALWAYS
        except ApiError as exc:
            status, data = exc.status_code, error_body(exc.code, exc.description, ctx.request_id)
            headers = {**exc.headers, **_ALWAYS}
        return HttpResponse(_RENDERER.render(data), status=status, content_type=JSON, headers=headers)

    def post(self, request: HttpRequest) -> dict[str, Any]:
        """The endpoint's answer (its fields in its OpenAPI response schema)."""
        raise NotImplementedError

    @sensitive_variables()
    def exchange_request(
        self, request: HttpRequest, serializer_class: type[serializers.Serializer[Any]]
    ) -> ExchangeRequest | ExchangeError:
        """The validated request, or the refusal the service is to record and raise."""
        try:
            params = parse_body(
                content_type=request.META.get("CONTENT_TYPE", ""),
                content_length=request.META.get("CONTENT_LENGTH"),
                read=lambda: request.read(MAX_BODY_BYTES + 1),
            )
        except _BadRequest as exc:
            return ExchangeError("invalid_request", reasons.INVALID_REQUEST, str(exc), before_token=True)
        data, errors = validate(serializer_class, params)
        if errors is not None:
            # A request naming no subject token at all is counted like an unreadable one.
            return ExchangeError(
                "invalid_request",
                reasons.INVALID_REQUEST,
                validation_sentence(errors),
                before_token=not params.get("subject_token"),
            )
        grant_type = data.get("grant_type")
        if grant_type is not None and grant_type != GRANT_TYPE_TOKEN_EXCHANGE:
            return ExchangeError(
                "unsupported_grant_type",
                reasons.UNSUPPORTED_GRANT_TYPE,
                f"grant_type must be {GRANT_TYPE_TOKEN_EXCHANGE}.",
            )
        return ExchangeRequest(
            subject_token=data["subject_token"],
            audience=data.get("audience"),
            duration_seconds=data.get("duration_seconds"),
        )


def _method_not_allowed(ctx: RequestContext, method: str | None) -> NoReturn:
    services.exchange_refuse(
        ctx=ctx,
        error=ExchangeError(
            "invalid_request",
            reasons.METHOD_NOT_ALLOWED,
            f"Method {method} is not allowed; use POST.",
            status_code=405,  # its Allow header is on every answer
            before_token=True,
        ),
    )


class _Text(serializers.CharField):
    """A text field of these bodies: :func:`parse_body` has already refused any value that is not
    valid Unicode, so DRF's own check -- a Python loop over every character, a 1-2 KB token on
    every exchange -- is dropped. (In ``__init__``: DRF deep-copies a serializer's fields by
    constructing them again.)"""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validators = [v for v in self.validators if not isinstance(v, ProhibitSurrogateCharactersValidator)]


class _Pattern(_Text, serializers.RegexField):
    pass


class _ExchangeInput(serializers.Serializer[Any]):
    subject_token = _Text(max_length=16 * 1024, help_text="The GitLab CI ID token.")
    subject_token_type = serializers.ChoiceField(choices=SUBJECT_TOKEN_TYPES)
    audience = _Pattern(
        regex=r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}\Z",
        required=False,
        help_text="The role ARN wanted; may be left out when exactly one role matches.",
    )
    requested_token_type = serializers.ChoiceField(choices=(TOKEN_TYPE_JWT,), required=False)


class TokenExchangeApi(ExchangeApi):
    endpoint = "token"

    @extend_schema_serializer(component_name="TokenExchangeRequest")
    class InputSerializer(_ExchangeInput):
        # Any other value is unsupported_grant_type (checked by the view), not invalid_request.
        grant_type = _Text(max_length=200, help_text=GRANT_TYPE_TOKEN_EXCHANGE)

    # The answer's schema for the OpenAPI document; post() answers the plain dict.
    @extend_schema_serializer(component_name="TokenExchangeResponse")
    class OutputSerializer(serializers.Serializer[Any]):
        access_token = serializers.CharField()
        issued_token_type = serializers.CharField()
        token_type = serializers.CharField()
        expires_in = serializers.IntegerField()
        role_arn = serializers.CharField()
        role_session_name = serializers.CharField()

    @extend_schema(
        operation_id="token_exchange",
        summary="Exchange a GitLab CI ID token for a Rolegate-signed token (RFC 8693)",
        description=(
            "A GitLab CI ID token in, a token signed by Rolegate for one AWS role out, its audience"
            " what AssumeRoleWithWebIdentity expects. No client authentication; every answer is"
            " no-store, every request is audited, and a refusal is an OAuth error."
        ),
        request={FORM: InputSerializer, JSON: InputSerializer},
        responses={
            200: OutputSerializer,
            400: ErrorSerializer,
            405: ErrorSerializer,
            429: ErrorSerializer,
            503: ErrorSerializer,
        },
    )
    @sensitive_variables()
    def post(self, request: HttpRequest) -> dict[str, Any]:
        grant = services.token_exchange(ctx=self.ctx, request=self.exchange_request(request, self.InputSerializer))
        return {
            "access_token": grant.access_token,
            "issued_token_type": TOKEN_TYPE_JWT,
            "token_type": "N_A",
            "expires_in": grant.expires_in,
            "role_arn": grant.role_arn,
            "role_session_name": grant.role_session_name,
        }


class CredentialsApi(ExchangeApi):
    endpoint = "credentials"

    @extend_schema_serializer(component_name="CredentialsRequest")
    class InputSerializer(_ExchangeInput):
        grant_type = _Text(max_length=200, required=False)
        duration_seconds = serializers.IntegerField(min_value=900, max_value=43200, required=False)

    # The answer's schema for the OpenAPI document; post() answers the plain dict.
    @extend_schema_serializer(component_name="CredentialProcessOutput")
    class OutputSerializer(serializers.Serializer[Any]):
        Version = serializers.IntegerField()
        AccessKeyId = serializers.CharField()
        SecretAccessKey = serializers.CharField()
        SessionToken = serializers.CharField()
        Expiration = serializers.CharField()

    @extend_schema(
        operation_id="credentials_exchange",
        summary="Exchange a GitLab CI ID token for temporary AWS credentials (credential_process format)",
        description=(
            "A GitLab CI ID token in, temporary AWS credentials for one role out, in the AWS CLI's"
            " credential_process format: Rolegate mints its token and calls STS"
            " AssumeRoleWithWebIdentity. No client authentication; every answer is no-store,"
            " every request is audited, and a refusal is an OAuth error."
        ),
        request={FORM: InputSerializer, JSON: InputSerializer},
        responses={
            200: OutputSerializer,
            400: ErrorSerializer,
            405: ErrorSerializer,
            429: ErrorSerializer,
            503: ErrorSerializer,
        },
    )
    @sensitive_variables()
    def post(self, request: HttpRequest) -> dict[str, Any]:
        credentials = services.credentials_exchange(
            ctx=self.ctx, request=self.exchange_request(request, self.InputSerializer)
        )
        return {
            "Version": 1,
            "AccessKeyId": credentials.access_key_id,
            "SecretAccessKey": credentials.secret_access_key,
            "SessionToken": credentials.session_token,
            "Expiration": credentials.expiration.isoformat().replace("+00:00", "Z"),
        }
