"""GitLab issuers' signing keys: cached in every process and shared between processes.

The fetch itself (total deadline, size cap, address check) is :mod:`exchange.jwks_fetch`.

**Cache**, two tiers:

- per process, in memory: used without any I/O while the keys are younger than
  :data:`MAX_KEY_AGE` and the token's ``kid`` is among them;
- shared, in the Django cache (Redis with ``ROLEGATE_CACHE_URL``; per process without it): each
  issuer's last good keys, kept without expiry and signed with the secret key
  (``django.core.signing``) so that someone who can write to Redis cannot plant a key, and the
  refresh gate below. A process started during a GitLab outage verifies with these keys.

**Refresh.** A ``kid`` not among the keys, or keys older than :data:`MAX_KEY_AGE`, make one
fetch attempt per issuer and :func:`refresh_interval` across all processes: the process that
adds the gate key (``cache.add``, atomic in Redis) fetches; a request that needs a key the
others are fetching waits for that fetch at most ``ROLEGATE_JWKS_FETCH_SECONDS``, then gets
:class:`KeysUnavailable` (503 ``temporarily_unavailable``, audited, in the exchange); a request
whose key is cached but old does not wait. When the shared cache is unreachable each process
falls back to its own single flight (a lock per issuer, the same bounded wait).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from django.conf import settings
from django.core import signing
from django.core.cache import cache
from redis.exceptions import RedisError

from exchange.jwks_fetch import ALLOWED_ALGORITHMS as ALLOWED_ALGORITHMS
from exchange.jwks_fetch import JwksFetchError, fetch_deadline, fetch_jwks_document, parsed_key
from exchange.jwks_status import jwks_fetch_recorded
from mappings.matching import RegisteredIssuer

logger = logging.getLogger(__name__)

MAX_KEY_AGE = 3600.0  # refresh keys this old on the next request (keeping them if that fails)
POLL_SECONDS = 0.05
SIGNING_SALT = "rolegate.exchange.jwks"


class KeysUnavailable(Exception):
    """No key can be given now (GitLab's outage or slowness, not the token's fault)."""


def refresh_interval() -> int:
    """Seconds between two JWKS fetch attempts for one issuer (``ROLEGATE_JWKS_MIN_REFRESH_SECONDS``)."""
    return settings.ROLEGATE_JWKS_MIN_REFRESH_SECONDS


def _keys_by_kid(entries: list[dict[str, Any]]) -> dict[str, jwt.PyJWK]:
    keys = {}
    for item in entries:
        parsed = parsed_key(item)
        if parsed is not None:
            keys[item["kid"]] = parsed
    return keys


# --- the cache -----------------------------------------------------------------------------------


@dataclass
class _Local:
    """One issuer's keys in this process."""

    lock: threading.Lock = field(default_factory=threading.Lock)  # only when the shared cache is down
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    fetched_at: float = 0.0
    attempted_at: float | None = None
    adopted: str | None = None  # the shared value these keys came from


class _SharedDown(Exception):
    pass


@dataclass(frozen=True)
class _Shared:
    """One issuer's entries in the Django cache: ``keys`` (signed) and the refresh ``gate``."""

    digest: str

    @classmethod
    def of(cls, issuer: RegisteredIssuer) -> _Shared:
        return cls(hashlib.sha256(f"{issuer.url}\n{issuer.jwks_url or ''}".encode()).hexdigest()[:40])

    @property
    def keys_key(self) -> str:
        return f"jwks:keys:{self.digest}"

    @property
    def gate_key(self) -> str:
        return f"jwks:gate:{self.digest}"

    def read(self) -> str | None:
        try:
            value: str | None = cache.get(self.keys_key)
            return value
        except (RedisError, OSError) as exc:
            raise _SharedDown() from exc

    def write(self, value: str) -> None:
        try:
            cache.set(self.keys_key, value, timeout=None)
        except (RedisError, OSError) as exc:
            logger.warning("JWKS not shared: the cache is unavailable (%s)", type(exc).__name__)

    def claim(self) -> bool:
        """True when this process may fetch now (no attempt in the last refresh interval)."""
        try:
            return cache.add(self.gate_key, "fetching", timeout=max(refresh_interval(), fetch_deadline() + 2))
        except (RedisError, OSError) as exc:
            raise _SharedDown() from exc

    def release(self, attempted_at: float) -> None:
        """The attempt is over: the gate stays closed for the rest of the refresh interval."""
        left = attempted_at + refresh_interval() - time.time()
        try:
            if left >= 1:
                cache.set(self.gate_key, "done", timeout=int(left))
            else:
                cache.delete(self.gate_key)
        except (RedisError, OSError) as exc:
            logger.warning("JWKS gate not released: the cache is unavailable (%s)", type(exc).__name__)

    def wait(self, seconds: float) -> bool:
        """Wait until no fetch is in flight; False when one still is after ``seconds``."""
        until = time.monotonic() + seconds
        while True:
            try:
                if cache.get(self.gate_key) != "fetching":
                    return True
            except (RedisError, OSError):
                return True
            if time.monotonic() >= until:
                return False
            time.sleep(POLL_SECONDS)


_registry_lock = threading.Lock()
_local: dict[str, _Local] = {}


def forget_cached_keys() -> None:
    """Drop this process's cached keys (tests; the shared cache is the cache backend's)."""
    with _registry_lock:
        _local.clear()


def _entry(shared: _Shared) -> _Local:
    entry = _local.get(shared.digest)
    if entry is None:
        with _registry_lock:
            entry = _local.setdefault(shared.digest, _Local())
    return entry


def _adopt(entry: _Local, value: str | None) -> None:
    """Take the shared keys when they are newer than this process's."""
    if value is None or value == entry.adopted:
        return
    try:
        data = signing.loads(value, salt=SIGNING_SALT)
    except signing.BadSignature:
        logger.warning("shared JWKS entry ignored: its signature does not verify")
        return
    if data["fetched_at"] > entry.fetched_at:
        entry.keys, entry.fetched_at = _keys_by_kid(data["keys"]), data["fetched_at"]
    entry.adopted = value


def _attempt(issuer: RegisteredIssuer, entry: _Local, shared: _Shared | None) -> None:
    """One fetch; on success the keys replace this process's (and the shared) ones."""
    entry.attempted_at = time.time()
    try:
        entries = fetch_jwks_document(issuer)
    except JwksFetchError as exc:
        logger.warning("JWKS of issuer %s unavailable: %s", issuer.name, exc)
        jwks_fetch_recorded(issuer=issuer.name, error=str(exc))
        return
    jwks_fetch_recorded(issuer=issuer.name, error=None)
    fetched_at = time.time()
    entry.keys, entry.fetched_at = _keys_by_kid(entries), fetched_at
    if shared is not None:
        value = signing.dumps({"keys": entries, "fetched_at": fetched_at}, salt=SIGNING_SALT, compress=True)
        entry.adopted = value
        shared.write(value)


def _fresh(entry: _Local, kid: str) -> jwt.PyJWK | None:
    found = entry.keys.get(kid)
    return found if found is not None and time.time() - entry.fetched_at < MAX_KEY_AGE else None


def signing_key(issuer: RegisteredIssuer, kid: str) -> jwt.PyJWK | None:
    """The issuer's key ``kid``; ``None`` when the issuer's keys do not include it.

    Raises :class:`KeysUnavailable` when no key of the issuer is known, or when the key may be
    in a fetch that did not end within :func:`fetch_deadline` seconds.
    """
    shared = _Shared.of(issuer)
    entry = _entry(shared)
    found = _fresh(entry, kid)
    if found is not None:
        return found
    try:
        _adopt(entry, shared.read())
        found = _fresh(entry, kid)
        if found is not None:
            return found
        if shared.claim():
            try:
                _attempt(issuer, entry, shared)
            finally:
                shared.release(entry.attempted_at or time.time())
        elif kid not in entry.keys:  # a stale key is used at once; a missing one is worth a wait
            finished = shared.wait(fetch_deadline())
            with contextlib.suppress(_SharedDown):
                _adopt(entry, shared.read())
            if not finished and kid not in entry.keys:
                raise _busy(issuer)
    except _SharedDown:
        _local_refresh(issuer, entry, kid)
    found = entry.keys.get(kid)
    if found is not None:
        return found
    if not entry.keys:
        raise KeysUnavailable(f"The signing keys of issuer {issuer.name!r} could not be fetched; try again shortly.")
    return None


def _busy(issuer: RegisteredIssuer) -> KeysUnavailable:
    return KeysUnavailable(
        f"The signing keys of issuer {issuer.name!r} are being fetched and did not arrive within "
        f"{fetch_deadline()} seconds; try again shortly."
    )


def _local_refresh(issuer: RegisteredIssuer, entry: _Local, kid: str) -> None:
    """The shared cache is down: single flight within this process, the same bounded wait."""
    if not entry.lock.acquire(timeout=0 if kid in entry.keys else fetch_deadline()):
        if kid in entry.keys:
            return
        raise _busy(issuer)
    try:
        if _fresh(entry, kid) is not None:
            return
        now = time.time()
        if entry.attempted_at is None or now - entry.attempted_at >= refresh_interval():
            _attempt(issuer, entry, None)
    finally:
        entry.lock.release()
