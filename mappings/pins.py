"""Identity pins (docs/trust-model.md#identity-pins): recorded by the exchange on a pinning
mapping's first grant, created by ``apply`` from a file's ``pins:``, moved to a new id only by an
accepted identity change (recorded as an :class:`~mappings.models.IdentityChange`).

Every write first locks the registry version's row -- the lock every registry writer takes, so
pin writers queue behind each other and behind ``apply`` in one order (no deadlock) -- and moves
the version with a ``pin`` entry in the change log, so every process's snapshot has the pin on its
next request. Two first uses of one path with different ids cannot both win: the second finds the
first one's pin once it holds the lock and is refused; the unique constraint on (issuer, kind,
path) backs this up.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from mappings import services
from mappings.matching import Failure, Pin, pin_conflict
from mappings.models import IdentityChange, IdentityPin, Issuer, RegistryVersion, validate_pin_id
from mappings.selectors import registry_pins

logger = logging.getLogger(__name__)


def _registry_locked() -> None:
    """Hold the registry version's row until the transaction ends (no-op outside PostgreSQL's
    row locks: SQLite serialises writers on its own)."""
    list(RegistryVersion.objects.select_for_update().filter(pk=1).values_list("pk", flat=True))


def _existing(keys: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], Pin]:
    match = Q(pk__in=[])
    for issuer, kind, path in keys:
        match |= Q(issuer__name=issuer, kind=kind, path=path)
    return {pin.key: pin for _, pin in registry_pins(IdentityPin.objects.filter(match))}


def pins_record(pins: Sequence[Pin]) -> list[Failure]:
    """Record ``pins`` -- a granted decision's ``new_pins``, seen in a verified token -- all or
    none. Returns, for each path already pinned to another id (another process's first use got
    there first), the failure the token meets; then nothing is recorded and the caller refuses."""
    if not pins:
        return []
    with transaction.atomic():
        _registry_locked()
        existing = _existing(pin.key for pin in pins)
        conflicts = [
            pin_conflict(existing[pin.key], pin.gitlab_id)
            for pin in pins
            if pin.key in existing and existing[pin.key].gitlab_id != pin.gitlab_id
        ]
        if conflicts:
            return conflicts
        issuers = dict(Issuer.objects.filter(name__in={pin.issuer for pin in pins}).values_list("name", "id"))
        now = timezone.now()
        wanted = sorted((p for p in pins if p.key not in existing and p.issuer in issuers), key=lambda p: p.key)
        created = [
            IdentityPin.objects.create(
                issuer_id=issuers[pin.issuer],
                kind=pin.kind,
                path=pin.path,
                gitlab_id=pin.gitlab_id,
                pinned_at=now,
                pinned_by=pin.pinned_by[:200],
            )
            for pin in wanted
        ]
        if created:
            services.registry_changed(role_ids=(), changed=[(IdentityPin, row.pk) for row in created])
    for pin in wanted:
        logger.info("pinned %s %s of issuer %s to %s on first use", pin.kind, pin.path, pin.issuer, pin.gitlab_id)
    return []


@dataclass(frozen=True)
class NewPin:
    """A pin ``apply`` creates from a file."""

    issuer: Issuer
    kind: str
    path: str
    gitlab_id: str
    pinned_at: datetime | None
    pinned_by: str


def pins_create(pins: Sequence[NewPin], *, actor: str) -> list[IdentityPin]:
    """Create pins that do not exist yet (``apply``, inside its transaction, which holds the
    registry version's row already)."""
    if not pins:
        return []
    with transaction.atomic():
        _registry_locked()
        now = timezone.now()
        created = [
            IdentityPin.objects.create(
                issuer=pin.issuer,
                kind=pin.kind,
                path=pin.path,
                gitlab_id=pin.gitlab_id,
                pinned_at=pin.pinned_at or now,
                pinned_by=(pin.pinned_by or f"apply by {actor}")[:200],
            )
            for pin in pins
        ]
        services.registry_changed(role_ids=(), changed=[(IdentityPin, row.pk) for row in created])
    return created


class IdentityChangeRefused(Exception):
    """An identity change that cannot be accepted; the message says why."""


NOTE_MAX = IdentityChange._meta.get_field("note").max_length or 500


def identity_change_accept(*, issuer: str, kind: str, path: str, new_id: str, actor: str, note: str) -> IdentityChange:
    """Move the pin of ``path`` (``kind`` project or namespace, of ``issuer``) to ``new_id``, and
    record who did it, when, the old and new ids and why (``note``). From the next request of every
    process on, tokens with ``new_id`` match the pin and tokens with the old id are refused."""
    if kind not in IdentityPin.Kind.values:
        raise IdentityChangeRefused(f"The kind is {kind!r}; it must be one of {', '.join(IdentityPin.Kind.values)}.")
    try:
        validate_pin_id(new_id)
    except ValidationError:
        raise IdentityChangeRefused(f"The new id {new_id!r} is not a GitLab id (1 to 64 digits, e.g. 20).") from None
    note = note.strip()
    if not note:
        raise IdentityChangeRefused("Say why the change is legitimate (the note is recorded with it).")
    if len(note) > NOTE_MAX:
        raise IdentityChangeRefused(f"The note is longer than {NOTE_MAX} characters.")
    with transaction.atomic():
        _registry_locked()
        pin = IdentityPin.objects.select_for_update().filter(issuer__name=issuer, kind=kind, path=path).first()
        if pin is None:
            raise IdentityChangeRefused(f"No {kind} {path!r} of issuer {issuer!r} is pinned.")
        if pin.gitlab_id == new_id:
            raise IdentityChangeRefused(f"The {kind} {path!r} of issuer {issuer!r} is pinned to {new_id} already.")
        change = IdentityChange.objects.create(
            pin=pin,
            issuer_name=issuer,
            kind=kind,
            path=path,
            old_id=pin.gitlab_id,
            new_id=new_id,
            actor=actor[:150],
            note=note,
        )
        pin.gitlab_id = new_id
        pin.pinned_at = change.accepted_at
        pin.pinned_by = f"identity change accepted by {actor}"[:200]
        pin.save(update_fields=["gitlab_id", "pinned_at", "pinned_by"])
        services.registry_changed(role_ids=(), changed=[(IdentityPin, pin.pk)])
    logger.info(
        "identity change accepted by %s: %s %s of issuer %s, %s -> %s", actor, kind, path, issuer, change.old_id, new_id
    )
    return change
