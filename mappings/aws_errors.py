"""AWS failures, classified once: transient (worth a retry later) or permanent (a real "no").

Shared by the IAM sync (``mappings.aws_iam``: Celery retries transient failures with backoff) and
the exchange's STS call (``exchange.aws_sts``: a transient failure answers 503
``temporarily_unavailable`` with ``Retry-After``, a permanent one ``invalid_target`` naming STS's
error code). See docs/reasons.md (``sts_unavailable``, ``sts_refused``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import botocore.exceptions
import botocore.parsers

# Error codes that mean "try again later", whatever the HTTP status.
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "ServiceFailure",
        "InternalFailure",
        "InternalError",
        "RequestTimeout",
        "RequestTimeoutException",
        "ConcurrentModification",
        "PriorRequestNotComplete",
        "IDPCommunicationError",
    }
)


class AwsError(Exception):
    """An AWS call failed; ``code`` is AWS's error code (or the botocore failure's name)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[type[AwsError], tuple[str, str]]:
        # Picklable with its two arguments, so Celery keeps the error itself (not a wrapper
        # showing its repr) when a task retries it.
        return type(self), (self.code, self.message)


class AwsTransientError(AwsError):
    """Throttling, a 5xx or 429, a timeout or a connection failure: retry later."""


class AwsPermanentError(AwsError):
    """Malformed policy, no such entity, access denied, an invalid token, a quota...: retrying
    will not help."""


# What botocore raises besides its own BotoCoreError tree: ResponseParserError (an endpoint, or a
# proxy in front of it, answered a body botocore cannot parse, e.g. a 500 with an HTML page) is
# a plain Exception.
_UNPARSEABLE = (botocore.parsers.ResponseParserError,)
AWS_FAILURES = (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError, *_UNPARSEABLE)


def classify(exc: Exception) -> AwsError:
    """The Rolegate error for a botocore failure."""
    if isinstance(exc, AwsError):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "Unknown")
        message = str(error.get("Message") or exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in TRANSIENT_CODES or status >= 500 or status == 429:
            return AwsTransientError(code, message)
        return AwsPermanentError(code, message)
    if isinstance(exc, _UNPARSEABLE):
        # The answer was garbled on the way or the endpoint is failing: nothing says "no".
        return AwsTransientError("ResponseParserError", str(exc).splitlines()[0] if str(exc) else "unparseable answer")
    if isinstance(exc, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError):
        # Connection refused or reset, connect and read timeouts, a response cut short.
        return AwsTransientError(type(exc).__name__, str(exc))
    if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
        return AwsPermanentError("NoCredentials", "no AWS credentials are configured")
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return AwsPermanentError(type(exc).__name__, str(exc))
    raise TypeError(f"not an AWS failure: {exc!r}") from exc


@contextmanager
def aws_errors() -> Iterator[None]:
    """Turn every botocore failure raised inside into :class:`AwsTransientError` or
    :class:`AwsPermanentError`."""
    try:
        yield
    except AWS_FAILURES as exc:
        raise classify(exc) from exc
