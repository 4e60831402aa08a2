"""Writes to the registry: the one place for its rules, used by the admin and by ``apply``.

Every write validates with ``full_clean()``, moves the registry version (so every process's
matcher sees the change on its next request) and, after commit, schedules the IAM sync of the
roles it touches. Nothing here calls AWS directly.
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from django.db import connection, models, transaction

from mappings import write_checks
from mappings.iam import retired, revocations, scheduling
from mappings.models import Account, IdentityPin, Issuer, Mapping, RegistryChange, RegistryVersion, Role

logger = logging.getLogger(__name__)

RegistryObject = TypeVar("RegistryObject", bound=Issuer | Account | Role | Mapping)


def _touched_role_ids(obj: models.Model) -> set[int]:
    """The roles whose trust policy may change when ``obj`` changes."""
    if isinstance(obj, Mapping):
        ids = {obj.role_id} if obj.role_id else set()
        if obj.pk:
            previous = Mapping.objects.filter(pk=obj.pk).values_list("role_id", flat=True).first()
            if previous:
                ids.add(previous)
        return ids
    if isinstance(obj, Role):
        return {obj.pk} if obj.pk else set()
    if isinstance(obj, Account):
        return set(Role.objects.filter(account_id=obj.pk).values_list("id", flat=True)) if obj.pk else set()
    if isinstance(obj, Issuer):
        return set(Mapping.objects.filter(issuer_id=obj.pk).values_list("role_id", flat=True)) if obj.pk else set()
    raise TypeError(f"not a registry object: {obj!r}")


# Versions kept in the change log; a process further behind than this rebuilds its snapshot.
CHANGES_KEPT = 1000
_KINDS: dict[type[models.Model], RegistryChange.Kind] = {
    Issuer: RegistryChange.Kind.ISSUER,
    Account: RegistryChange.Kind.ACCOUNT,
    Role: RegistryChange.Kind.ROLE,
    IdentityPin: RegistryChange.Kind.PIN,
}


def registry_changed(
    *, role_ids: Iterable[int], changed: Iterable[tuple[type[models.Model], int]] | None = None
) -> None:
    """Record that the registry changed (inside the writing transaction): move the version and
    log what changed -- ``changed`` as (model, id) pairs, or ``None`` for "anything" (a bulk
    write), which makes every process rebuild its snapshot."""
    stamp = uuid.uuid4()
    version = _version_bump(stamp)
    kinds = [] if changed is None else [(_KINDS.get(model, RegistryChange.Kind.MAPPING), pk) for model, pk in changed]
    RegistryChange.objects.bulk_create(
        [RegistryChange(version=version, stamp=stamp, kind=kind, object_id=pk) for kind, pk in set(kinds) if pk]
        or [RegistryChange(version=version, stamp=stamp, kind=RegistryChange.Kind.ALL)]
    )
    if version % 100 == 0:
        RegistryChange.objects.filter(version__lte=version - CHANGES_KEPT).delete()
    role_ids = {role_id for role_id in role_ids if role_id}
    if role_ids:
        scheduling.schedule_role_sync(role_ids=role_ids)


def _version_bump(stamp: uuid.UUID) -> int:
    """Move the version (its row stays locked until commit: registry writers queue) and return it."""
    table = connection.ops.quote_name(RegistryVersion._meta.db_table)
    value = RegistryVersion._meta.get_field("stamp").get_db_prep_value(stamp, connection)
    for _ in range(2):
        with connection.cursor() as cursor:
            bump = f"UPDATE {table} SET version = version + 1, stamp = %s WHERE id = 1 RETURNING version"  # noqa: S608
            cursor.execute(bump, [value])
            row = cursor.fetchone()
        if row is not None:
            version: int = row[0]
            return version
        _, created = RegistryVersion.objects.get_or_create(pk=1, defaults={"version": 1, "stamp": stamp})
        if created:
            return 1
    raise RuntimeError("the registry version row cannot be moved")


@contextmanager
def registry_batch() -> Iterator[write_checks.WriteBatch]:
    """Group registry writes whose result is checked once, at the end (``apply`` wraps its plan).

    Inside a transaction. When the outermost batch ends, the registry it leaves is checked
    (``mappings.write_checks``): guardrails of every account or role saved, quotas of every role a
    save touched. :class:`~mappings.write_checks.RegistryRefused` rolls the whole batch back. The
    batch's ``policy_sizes`` then hold each touched role's policy size against its quota.
    """
    outer = write_checks.current()
    if outer is not None:
        yield outer
        return
    batch, token = write_checks.begin()
    try:
        with transaction.atomic():
            yield batch
            batch.check()
    finally:
        write_checks.end(token)


def registry_save(obj: RegistryObject, *, actor: str) -> RegistryObject:
    """Validate and save an issuer, account, role or mapping (create or update).

    Raises ``ValidationError`` for the object's own fields (``full_clean``) and for what the save
    would leave behind: a guardrail of the account broken by one of its mappings or roles, or a
    trust policy over its account's quota (``mappings.write_checks``)."""
    return _save(obj, actor=actor, log=True)


def _save(obj: RegistryObject, *, actor: str, log: bool) -> RegistryObject:
    owner = write_checks.current() is None
    try:
        with registry_batch() as batch:
            obj.full_clean()
            touched = _touched_role_ids(obj)
            batch.touching(touched)
            created = obj.pk is None
            if isinstance(obj, Mapping):
                _mapping_trust_taken(obj, actor=actor)
            if isinstance(obj, Role):
                retired.role_identity_changed(obj)
            elif isinstance(obj, Account):
                retired.account_identity_changed(obj)
            obj.save()
            touched |= _touched_role_ids(obj)
            batch.saved(obj, touched)
            registry_changed(role_ids=touched, changed=[(type(obj), obj.pk)])
    except write_checks.RegistryRefused as exc:
        if not owner:
            raise
        raise exc.as_validation_error(obj) from None
    if log:
        logger.info("%s %s %s by %s", "created" if created else "updated", type(obj).__name__.lower(), obj, actor)
    return obj


class _Trial(Exception):
    pass


def registry_check(obj: RegistryObject) -> None:
    """Raise the ``ValidationError`` that :func:`registry_save` would raise for ``obj``, writing
    nothing (the save runs in a savepoint that is rolled back; ``obj`` itself is not touched).

    Forms call it to show every refusal next to the fields before anything is saved."""
    if write_checks.current() is not None:
        return  # inside a batch the outer write decides at its end
    try:
        with transaction.atomic():
            _save(copy.copy(obj), actor="", log=False)
            raise _Trial
    except _Trial:
        pass


def registry_delete(obj: RegistryObject, *, actor: str) -> None:
    """Delete an issuer, account, role or mapping. Issuers and accounts still in use are refused
    by ``on_delete=PROTECT``; deleting a role deletes its mappings. A deletion only takes trust
    away, so neither guardrails nor quotas ever refuse it."""
    with registry_batch() as batch:
        touched = _touched_role_ids(obj)
        batch.touching(touched)
        if isinstance(obj, Role):
            touched.discard(obj.pk)  # the role is gone: its IAM role's trust is emptied instead
            retired.role_retire(
                account_id=obj.account.account_id, role_name=obj.name, manager_role_arn=obj.account.manager_role_arn
            )
            scheduling.schedule_account_sync(account_id=obj.account_id)
        if isinstance(obj, Mapping) and obj.enabled:
            revocations.mapping_removed(obj, role_id=obj.role_id, actor=actor, why="deleted")
        label, changed = str(obj), [(type(obj), obj.pk)]
        obj.delete()
        registry_changed(role_ids=touched, changed=changed)
    logger.info("deleted %s %s by %s", type(obj).__name__.lower(), label, actor)


def _mapping_trust_taken(mapping: Mapping, *, actor: str) -> None:
    """Before saving ``mapping``: a live session revocation where it stops granting its role
    (disabled, or moved to another role) on an account that opted in."""
    before = Mapping.objects.filter(pk=mapping.pk).values("enabled", "role_id").first() if mapping.pk else None
    if before is None or not before["enabled"]:
        return
    if not mapping.enabled:
        revocations.mapping_removed(mapping, role_id=before["role_id"], actor=actor, why="disabled")
    elif mapping.role_id != before["role_id"]:
        revocations.mapping_removed(mapping, role_id=before["role_id"], actor=actor, why="moved to another role")


def issuer_create(*, actor: str, **fields: object) -> Issuer:
    return registry_save(Issuer(**fields), actor=actor)


def account_create(*, actor: str, **fields: object) -> Account:
    return registry_save(Account(**fields), actor=actor)


def role_create(*, actor: str, **fields: object) -> Role:
    return registry_save(Role(**fields), actor=actor)


def mapping_create(*, actor: str, **fields: object) -> Mapping:
    return registry_save(Mapping(**fields), actor=actor)


def registry_update(obj: RegistryObject, *, actor: str, **fields: object) -> RegistryObject:
    """Set ``fields`` on ``obj`` and save it through :func:`registry_save`."""
    for name, value in fields.items():
        setattr(obj, name, value)
    return registry_save(obj, actor=actor)
