"""What an IAM sync reads: a role's policy input and desired policy, an account's OIDC providers.

A role's mappings are read directly, through the registry's one ``Rule`` builder, rather than
from the cached registry snapshot: a sync must see the committed state, and costs one query.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from mappings import policies
from mappings.matching import Rule
from mappings.models import Account, Issuer, Mapping, RetiredRole, Role
from mappings.selectors import registry_rules


def role_label(role: Role) -> str:
    return f"role {role.account.name}/{role.name}"


def role_rules(role: Role) -> list[Rule]:
    """The role's mappings (live or not) as matcher rules, by name."""
    return registry_rules(Mapping.objects.filter(role=role).order_by("name"))


def role_policy_input(role: Role) -> policies.PolicyInput:
    """The generator's input for ``role``, read from the database."""
    account = role.account
    rules = role_rules(role)
    issuer_names = {rule.issuer for rule in rules}
    issuers = tuple(
        policies.IssuerInfo(name=i.name, url=i.url, audiences=tuple(i.audiences))
        for i in Issuer.objects.filter(name__in=issuer_names).order_by("name")
    )
    return policies.PolicyInput(
        account_id=account.account_id,
        mode=account.mode,
        audience=account.audience,
        trust_policy_limit=account.trust_policy_limit,
        session_tags=role.session_tags,
        rolegate_issuer=settings.ROLEGATE_ISSUER,
        issuers=issuers,
        rules=tuple(rules),
        now=timezone.now(),
        source_identity=account.source_identity and account.mode == Account.Mode.BROKERED,
    )


def role_desired_policy(role: Role) -> policies.PolicyResult:
    """The trust policy the role should have now."""
    return policies.generate(role_policy_input(role))


def policy_diff(live: object, desired: object, *, label: str) -> str:
    """A unified diff of the normalised documents, for people."""
    before = policies.pretty(policies.normalise(live)).splitlines(keepends=True) if live is not None else []
    after = policies.pretty(policies.normalise(desired)).splitlines(keepends=True)
    return "".join(difflib.unified_diff(before, after, fromfile=f"{label} (live)", tofile=f"{label} (desired)"))


def account_providers(account: Account) -> list[tuple[str, list[str]]]:
    """The OIDC providers (issuer URL, client ids) the account's roles trust."""
    if account.mode == Account.Mode.BROKERED:
        return [(settings.ROLEGATE_ISSUER, [account.audience])]
    issuers = Issuer.objects.filter(mappings__role__account=account).distinct().order_by("name")
    return [(issuer.url, list(issuer.audiences)) for issuer in issuers]


def provider_stale(account: Account) -> bool:
    """Whether the account's provider(s) may not match the registry: never synced, failed, or the
    account (or, in direct mode, one of its issuers) changed since the last provider sync."""
    synced = account.provider_synced_at
    if account.provider_status != Account.SyncStatus.IN_SYNC or synced is None or account.updated_at > synced:
        return True
    if account.mode == Account.Mode.DIRECT:
        return Issuer.objects.filter(mappings__role__account=account, updated_at__gt=synced).exists()
    return False


def account_ids() -> list[int]:
    """Every account's primary key, by name (the drift scan's work list)."""
    return list(Account.objects.order_by("name").values_list("id", flat=True))


def orphan_account_ids() -> list[str]:
    """AWS accounts with retired roles that Rolegate no longer manages at all."""
    managed = set(Account.objects.values_list("account_id", flat=True))
    return sorted({a for a in RetiredRole.objects.values_list("account_id", flat=True) if a not in managed})


def expiries_between(
    start: datetime, end: datetime, *, role_ids: Iterable[int] | None = None
) -> list[tuple[int, datetime]]:
    """``(role id, moment)`` for every enabled mapping that expires in ``(start, end]``, by moment."""
    mappings = Mapping.objects.filter(enabled=True, expires_at__gt=start, expires_at__lte=end)
    if role_ids is not None:
        mappings = mappings.filter(role_id__in=list(role_ids))
    found = {
        (role_id, moment) for role_id, moment in mappings.values_list("role_id", "expires_at") if moment is not None
    }
    return sorted(found, key=lambda item: (item[1], item[0]))


def roles_expired_since_sync(now: datetime) -> list[int]:
    """Roles with an enabled mapping that expired after the role's last sync (or before its
    first): IAM may still trust that mapping. One indexed query."""
    expired = Q(mappings__enabled=True, mappings__expires_at__lte=now) & (
        Q(synced_at__isnull=True) | Q(mappings__expires_at__gt=F("synced_at"))
    )
    return sorted(set(Role.objects.filter(expired).values_list("id", flat=True)))
