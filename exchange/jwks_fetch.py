"""Fetching a GitLab issuer's JWKS (OIDC discovery, then the keys) within a total deadline.

Discovery (unless the issuer has a ``jwks_url``) and the JWKS together end by
``ROLEGATE_JWKS_FETCH_SECONDS`` (default 5) seconds, however slowly the server answers: each
connect and read also has its own :data:`FETCH_TIMEOUT`, and at the deadline a watchdog shuts the
connection down, so a server dripping one byte at a time cannot hold a worker. Bodies over
256 KiB are refused, no redirect is followed, and every connection is checked once its TCP
connection is up, before a byte is sent: an address that ``mappings.addresses.address_refusal``
refuses (loopback, link-local, ... unless ``ROLEGATE_ISSUER_ALLOWED_NETWORKS`` lists it) ends the
fetch, whatever the host name resolved to. Through a proxy (``HTTPS_PROXY``), the proxy's address
is the one checked. Name resolution counts against the deadline too: ``getaddrinfo`` cannot be
interrupted, so it runs in its own daemon thread and a resolver that does not answer in time
ends the fetch (the thread is left to finish on its own).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from mappings.addresses import address_refusal
from mappings.matching import RegisteredIssuer

ALLOWED_ALGORITHMS = ("RS256",)
FETCH_TIMEOUT = 3.0  # each connect and each read
MAX_RESPONSE_BYTES = 256 * 1024


class JwksFetchError(Exception):
    pass


def fetch_deadline() -> int:
    """Seconds a fetch (discovery + JWKS) may take in all (``ROLEGATE_JWKS_FETCH_SECONDS``)."""
    return settings.ROLEGATE_JWKS_FETCH_SECONDS


class _Fetch(threading.local):
    """The sockets the current thread's fetch opened (the watchdog shuts them at the deadline),
    and that deadline (``time.monotonic()``)."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] | None = None
        self.deadline: float | None = None


_fetch = _Fetch()


def _checked(sock: socket.socket) -> socket.socket:
    """A freshly connected socket, refused when its peer is an address Rolegate must not call."""
    peer = sock.getpeername()[0]
    refusal = address_refusal(ip_address(peer.split("%", 1)[0]))
    if refusal is not None:
        sock.close()
        raise JwksFetchError(f"refused to connect: {refusal}")
    if _fetch.sockets is not None:
        _fetch.sockets.append(sock)
    return sock


def _addresses(host: str, port: int) -> list[str]:
    """``host``'s addresses, resolved within what is left of the current fetch's deadline."""
    deadline = _fetch.deadline if _fetch.deadline is not None else time.monotonic() + fetch_deadline()
    answer: list[Any] = []
    done = threading.Event()

    def resolve() -> None:
        try:
            answer.append(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        except OSError as exc:
            answer.append(exc)
        finally:
            done.set()

    threading.Thread(target=resolve, name="jwks-resolve", daemon=True).start()
    if not done.wait(max(0.0, deadline - time.monotonic())):
        raise JwksFetchError(f"resolving {host} did not end by the {fetch_deadline()} s deadline")
    if isinstance(answer[0], OSError):
        raise JwksFetchError(f"{host} does not resolve")
    return list(dict.fromkeys(info[4][0] for info in answer[0]))


class _ResolvedConnection(HTTPConnection):
    """Connects to the addresses :func:`_addresses` found, in order; TLS still names the host."""

    def _new_conn(self) -> socket.socket:
        name = self._dns_host
        addresses = _addresses(name, self.port)
        try:
            for index, address in enumerate(addresses):
                self._dns_host = address  # what urllib3 connects to; restored before TLS
                try:
                    return _checked(super()._new_conn())
                except (NewConnectionError, ConnectTimeoutError):
                    if index == len(addresses) - 1:
                        raise
            raise JwksFetchError(f"{name} has no address")
        finally:
            self._dns_host = name


class _CheckedHTTPConnection(_ResolvedConnection):
    pass


class _CheckedHTTPSConnection(_ResolvedConnection, HTTPSConnection):
    pass


class _WatchedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


_POOLS: dict[str, type[HTTPConnectionPool]] = {"http": _WatchedHTTPConnectionPool, "https": _WatchedHTTPSConnectionPool}


class _Adapter(HTTPAdapter):
    """requests' adapter, its connections checked and watched (:func:`_checked`)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_POOLS)  # through a proxy, the proxy's address is checked
        return manager


@contextlib.contextmanager
def _deadline_session(deadline: float) -> Iterator[requests.Session]:
    """A session whose connections are shut down at ``deadline`` (``time.monotonic()``)."""
    sockets: list[socket.socket] = []

    def shut() -> None:
        for sock in list(sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked read at once

    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), shut)
    watchdog.daemon = True
    session = requests.Session()
    session.mount("http://", _Adapter())
    session.mount("https://", _Adapter())
    _fetch.sockets = sockets
    _fetch.deadline = deadline
    watchdog.start()
    try:
        yield session
    finally:
        watchdog.cancel()
        _fetch.sockets = None
        _fetch.deadline = None
        session.close()


def _check_url(url: object) -> str:
    if not isinstance(url, str):
        raise JwksFetchError("jwks_uri is not a string")
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and settings.ROLEGATE_ALLOW_HTTP):
        raise JwksFetchError(f"{url!r} is not an https URL")
    if not parts.hostname:
        raise JwksFetchError(f"{url!r} has no host")
    return url


def _get_json(session: requests.Session, url: str, deadline: float) -> object:
    """GET ``url`` with bounded time and size; no redirects."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise JwksFetchError(f"{url}: the {fetch_deadline()} s deadline passed")
    try:
        with session.get(
            _check_url(url),
            timeout=min(FETCH_TIMEOUT, remaining),
            stream=True,
            allow_redirects=False,
            headers={"Accept": "application/json", "Accept-Encoding": "identity"},
        ) as response:
            if response.status_code != 200:
                raise JwksFetchError(f"{url} answered HTTP {response.status_code}")
            body = b""
            for chunk in response.iter_content(16384):
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise JwksFetchError(f"{url} answered more than {MAX_RESPONSE_BYTES} bytes")
                if time.monotonic() >= deadline:
                    break
    except requests.RequestException as exc:
        if time.monotonic() >= deadline:
            raise JwksFetchError(f"{url}: the {fetch_deadline()} s deadline passed") from None
        raise JwksFetchError(f"{url}: {type(exc).__name__}") from None
    if time.monotonic() >= deadline:  # a body cut short by the watchdog is never parsed
        raise JwksFetchError(f"{url}: the {fetch_deadline()} s deadline passed")
    try:
        return json.loads(body)
    except ValueError:
        raise JwksFetchError(f"{url} did not answer JSON") from None


def fetch_jwks_document(issuer: RegisteredIssuer) -> list[dict[str, Any]]:
    """The issuer's usable JWKS entries (RS256 signing keys with a ``kid``), via its configured
    ``jwks_url`` or OIDC discovery, within :func:`fetch_deadline` seconds."""
    deadline = time.monotonic() + fetch_deadline()
    with _deadline_session(deadline) as session:
        jwks_url = issuer.jwks_url
        if not jwks_url:
            discovery = _get_json(session, f"{issuer.url}/.well-known/openid-configuration", deadline)
            if not isinstance(discovery, dict):
                raise JwksFetchError("the discovery document is not a JSON object")
            if discovery.get("issuer") != issuer.url:
                raise JwksFetchError("the discovery document names another issuer")
            jwks_url = discovery.get("jwks_uri")
        document = _get_json(session, _check_url(jwks_url), deadline)
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksFetchError("the JWKS has no keys list")
    entries = []
    for item in document["keys"]:
        if not isinstance(item, dict) or item.get("kty") != "RSA" or not isinstance(item.get("kid"), str):
            continue
        if item.get("use", "sig") != "sig" or item.get("alg", "RS256") not in ALLOWED_ALGORITHMS:
            continue
        if parsed_key(item) is not None:
            entries.append(item)
    return entries


def parsed_key(item: dict[str, Any]) -> jwt.PyJWK | None:
    """``item`` as an RS256 key, or ``None`` when it is not one."""
    try:
        return jwt.PyJWK(item, algorithm="RS256")
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
        return None
