"""Rolegate's own signing keys: generation, encryption at rest, rotation, signing.

Rotation (``python manage.py rotate_signing_key``), with the timestamps on :class:`SigningKey`:

1. ``signing_key_rotate`` creates a ``next`` key, published in the JWKS at once, with
   ``activates_at = now + ROLEGATE_KEY_OVERLAP`` so relying parties (AWS STS) that cached the
   JWKS see the new key before any token is signed with it.
2. ``signing_keys_promote`` (run on demand by every process at most every
   ``KEY_CACHE_SECONDS``, by the command and by a periodic task) makes a due ``next`` key
   ``current`` and the old ``current`` key ``previous`` with
   ``retires_at = now + KEY_CACHE_SECONDS + ROLEGATE_TOKEN_LIFETIME + RETIRE_MARGIN``: other
   processes may sign with their cached old key for up to ``KEY_CACHE_SECONDS`` more, and each
   of those tokens lives ``ROLEGATE_TOKEN_LIFETIME``.
3. Once ``retires_at`` has passed the ``previous`` key is ``retired``: out of the JWKS, kept
   for the record. A process never signs with anything but the ``current`` key.

The first key is generated, already ``current``, on first use. Private keys are encrypted with
AES-GCM under a key derived from ``DJANGO_SECRET_KEY`` with HKDF; each process decrypts a key
once and keeps it in memory.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from exchange.models import SigningKey

ALGORITHM = "RS256"
KEY_SIZE = 2048
KEY_CACHE_SECONDS = 60
RETIRE_MARGIN_SECONDS = 60
_BLOB_VERSION = b"v1"

_lock = threading.Lock()
_private_keys: dict[str, rsa.RSAPrivateKey] = {}
_cached: _Cached | None = None


@dataclass(frozen=True)
class _Cached:
    kid: str
    private_key: rsa.RSAPrivateKey
    until: float


class SigningKeyError(Exception):
    """A stored key cannot be used (e.g. DJANGO_SECRET_KEY changed since it was encrypted)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def public_jwk(public_key: rsa.RSAPublicKey) -> dict[str, str]:
    numbers = public_key.public_numbers()
    return {"kty": "RSA", "n": _int_b64(numbers.n), "e": _int_b64(numbers.e)}


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256) of an RSA key: the required members, sorted, no spaces."""
    canonical = json.dumps({"e": jwk["e"], "kty": jwk["kty"], "n": jwk["n"]}, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode("utf-8")).digest())


def _kek(secret: str | None = None) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"rolegate", info=b"signing-key-encryption-v1")
    return AESGCM(hkdf.derive((secret or settings.SECRET_KEY).encode("utf-8")))


def _encrypt(private_key: rsa.RSAPrivateKey, kid: str) -> bytes:
    der = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    nonce = os.urandom(12)
    return _BLOB_VERSION + nonce + _kek().encrypt(nonce, der, kid.encode("ascii"))


def _decrypt(stored: bytes | memoryview, kid: str) -> rsa.RSAPrivateKey:
    blob = bytes(stored)  # a BinaryField reads as memoryview on PostgreSQL
    if blob[:2] != _BLOB_VERSION:
        raise SigningKeyError(f"signing key {kid} has an unknown encryption format")
    # The current secret first, then DJANGO_SECRET_KEY_FALLBACKS: rotating the secret keeps the
    # signing keys readable while the old one is listed there.
    for secret in (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS):
        try:
            der = _kek(secret).decrypt(blob[2:14], blob[14:], kid.encode("ascii"))
            break
        except InvalidTag:
            continue
    else:
        raise SigningKeyError(
            f"signing key {kid} cannot be decrypted: DJANGO_SECRET_KEY differs from the one it was stored with "
            "(list the old one in DJANGO_SECRET_KEY_FALLBACKS)"
        )
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SigningKeyError(f"signing key {kid} is not an RSA key")
    return key


def signing_key_create(*, state: str, now: datetime, activates_at: datetime) -> SigningKey:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
    jwk = public_jwk(private_key.public_key())
    kid = thumbprint(jwk)
    key = SigningKey.objects.create(
        kid=kid,
        state=state,
        public_jwk=jwk,
        private_key_encrypted=_encrypt(private_key, kid),
        created_at=now,
        activates_at=activates_at,
        activated_at=now if state == SigningKey.State.CURRENT else None,
    )
    _private_keys[kid] = private_key
    return key


def _retires_at(now: datetime) -> datetime:
    return now + timedelta(seconds=KEY_CACHE_SECONDS + settings.ROLEGATE_TOKEN_LIFETIME + RETIRE_MARGIN_SECONDS)


@transaction.atomic
def signing_key_rotate(*, now: datetime | None = None) -> SigningKey:
    """Publish a new ``next`` key that starts signing after ``ROLEGATE_KEY_OVERLAP`` seconds.

    Without any key yet, the new key is ``current`` at once. A rotation already under way (a
    ``next`` key exists) is returned unchanged.
    """
    now = now or timezone.now()
    signing_keys_promote(now=now)
    pending = SigningKey.objects.select_for_update().filter(state=SigningKey.State.NEXT).first()
    if pending is not None:
        return pending
    if not SigningKey.objects.filter(state=SigningKey.State.CURRENT).exists():
        return signing_key_create(state=SigningKey.State.CURRENT, now=now, activates_at=now)
    return signing_key_create(
        state=SigningKey.State.NEXT, now=now, activates_at=now + timedelta(seconds=settings.ROLEGATE_KEY_OVERLAP)
    )


def _promotion_due(now: datetime) -> bool:
    return (
        SigningKey.objects.filter(state=SigningKey.State.NEXT, activates_at__lte=now).exists()
        or SigningKey.objects.filter(state=SigningKey.State.PREVIOUS, retires_at__lte=now).exists()
    )


@transaction.atomic
def signing_keys_promote(*, now: datetime | None = None) -> list[str]:
    """Move keys along next -> current -> previous -> retired as their times come; returns what changed."""
    now = now or timezone.now()
    changes: list[str] = []
    if not _promotion_due(now):
        return changes
    keys = list(SigningKey.objects.select_for_update().exclude(state=SigningKey.State.RETIRED).order_by("id"))
    due = [k for k in keys if k.state == SigningKey.State.NEXT and k.activates_at <= now]
    if due:
        incoming = max(due, key=lambda k: (k.activates_at, k.id))
        for key in keys:
            if key.state == SigningKey.State.CURRENT or (key.state == SigningKey.State.NEXT and key in due):
                if key is incoming:
                    continue
                key.state = SigningKey.State.PREVIOUS
                key.deactivated_at = now
                key.retires_at = _retires_at(now)
                key.save(update_fields=["state", "deactivated_at", "retires_at"])
                changes.append(f"{key.kid}: previous until {key.retires_at.isoformat()}")
        incoming.state = SigningKey.State.CURRENT
        incoming.activated_at = now
        incoming.save(update_fields=["state", "activated_at"])
        changes.append(f"{incoming.kid}: current")
    for key in keys:
        if key.state == SigningKey.State.PREVIOUS and key.retires_at is not None and key.retires_at <= now:
            key.state = SigningKey.State.RETIRED
            key.retired_at = now
            key.save(update_fields=["state", "retired_at"])
            changes.append(f"{key.kid}: retired")
    return changes


def _load_current(now: datetime) -> tuple[str, rsa.RSAPrivateKey, datetime | None]:
    signing_keys_promote(now=now)
    row = SigningKey.objects.filter(state=SigningKey.State.CURRENT).first()
    if row is None:
        try:
            with transaction.atomic():
                row = signing_key_create(state=SigningKey.State.CURRENT, now=now, activates_at=now)
        except IntegrityError:  # another process created it first
            row = SigningKey.objects.get(state=SigningKey.State.CURRENT)
    private_key = _private_keys.get(row.kid)
    if private_key is None:
        private_key = _decrypt(row.private_key_encrypted, row.kid)
        _private_keys[row.kid] = private_key
    upcoming = (
        SigningKey.objects.filter(state=SigningKey.State.NEXT)
        .order_by("activates_at")
        .values_list("activates_at", flat=True)
        .first()
    )
    return row.kid, private_key, upcoming


def current_signing_key() -> tuple[str, rsa.RSAPrivateKey]:
    """The ``current`` key (kid, private key), cached per process for ``KEY_CACHE_SECONDS``."""
    global _cached
    cached = _cached
    now_ts = time.time()
    if cached is not None and now_ts < cached.until:
        return cached.kid, cached.private_key
    with _lock:
        if _cached is not None and time.time() < _cached.until:
            return _cached.kid, _cached.private_key
        now = timezone.now()
        kid, private_key, upcoming = _load_current(now)
        until = now_ts + KEY_CACHE_SECONDS
        if upcoming is not None:
            until = min(until, max(now_ts, upcoming.timestamp()))
        _cached = _Cached(kid=kid, private_key=private_key, until=until)
        return kid, private_key


def forget_cached_keys() -> None:
    """Drop this process's cached keys (tests; after a DJANGO_SECRET_KEY change)."""
    global _cached
    with _lock:
        _cached = None
        _private_keys.clear()


def published_keys() -> list[dict[str, str]]:
    """The JWKS ``keys``: every next, current and previous key, public parts only."""
    current_signing_key()  # a fresh installation publishes its first key on first request
    rows = SigningKey.objects.filter(
        state__in=[SigningKey.State.NEXT, SigningKey.State.CURRENT, SigningKey.State.PREVIOUS]
    ).order_by("created_at", "id")
    return [{**row.public_jwk, "kid": row.kid, "alg": ALGORITHM, "use": "sig"} for row in rows]


class Signer:
    """``payload`` and the current key, taken together: :meth:`token` signs, pure computation
    that reads nothing (the exchange signs while its audit statement is on the database)."""

    __slots__ = ("_kid", "_payload", "_private_key")

    def __init__(self, payload: dict[str, object]) -> None:
        self._kid, self._private_key = current_signing_key()  # SigningKeyError: no usable key
        self._payload = payload

    def __repr__(self) -> str:
        return f"<Signer kid={self._kid}>"  # never the key or the claims

    @sensitive_variables()
    def token(self) -> str:
        """The payload as an RS256 JWT signed with the key, ``kid`` in the header."""
        headers = {"kid": self._kid, "typ": "JWT"}
        return jwt.encode(self._payload, self._private_key, algorithm=ALGORITHM, headers=headers)


def new_jti() -> str:
    return uuid.uuid4().hex


def signing_key_problems() -> list[str]:
    """Why a key that signs now or will sign next cannot be used (it does not decrypt with
    ``DJANGO_SECRET_KEY`` or its fallbacks); empty when every one can (or none exists yet: the
    first exchange creates one). Decrypts afresh, ignoring this process's cache."""
    problems = []
    for row in SigningKey.objects.filter(state__in=[SigningKey.State.CURRENT, SigningKey.State.NEXT]).order_by("id"):
        try:
            _decrypt(row.private_key_encrypted, row.kid)
        except (SigningKeyError, ValueError) as exc:
            problems.append(str(exc))
    return problems
