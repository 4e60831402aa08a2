"""The GitLab instance console users sign in with: its OpenID Connect discovery document.

One client module for this remote system: the endpoints come from
``<ROLEGATE_OIDC_ISSUER>/.well-known/openid-configuration`` (OpenID Connect Discovery 1.0 §4),
fetched on the first sign-in and kept for an hour, so any GitLab instance needs only its URL.
https://docs.gitlab.com/integration/openid_connect_provider/
"""

from __future__ import annotations

import threading
import time

import requests
from django.conf import settings

_TTL = 3600.0
_lock = threading.Lock()
_cached: tuple[str, float, dict] | None = None  # (issuer, fetched at, document)

REQUIRED = ("issuer", "authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri")


class ProviderUnavailable(Exception):
    """The discovery document could not be fetched or is not the configured issuer's."""


def enabled() -> bool:
    return bool(settings.ROLEGATE_OIDC_ISSUER)


def metadata() -> dict:
    """The issuer's discovery document (cached); raises :class:`ProviderUnavailable`."""
    global _cached
    issuer = settings.ROLEGATE_OIDC_ISSUER
    with _lock:
        if _cached and _cached[0] == issuer and time.monotonic() - _cached[1] < _TTL:
            return _cached[2]
        url = f"{issuer}/.well-known/openid-configuration"
        try:
            response = requests.get(url, timeout=settings.ROLEGATE_OIDC_TIMEOUT)
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise ProviderUnavailable(f"{url}: {type(exc).__name__}") from None
        if not isinstance(document, dict) or any(not isinstance(document.get(k), str) for k in REQUIRED):
            raise ProviderUnavailable(f"{url} lacks one of {', '.join(REQUIRED)}")
        # Discovery §4.3: the document's issuer is exactly the one it was fetched for.
        if document["issuer"].rstrip("/") != issuer:
            raise ProviderUnavailable(f"{url} names issuer {document['issuer']!r}, not {issuer!r}")
        _cached = (issuer, time.monotonic(), document)
        return document


def endpoint(name: str) -> str:
    return metadata()[name]


def forget() -> None:
    """Drop the cached document (tests; a changed issuer is noticed without it)."""
    global _cached
    with _lock:
        _cached = None
