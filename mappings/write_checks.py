"""Checks of a registry write against the state it leaves: guardrails and trust-policy quotas.

``mappings.services`` runs every write inside a :class:`WriteBatch` (one per outermost write; an
``apply`` holds one around its whole plan). When the batch ends — still inside the writing
transaction, so a refusal rolls everything back — it checks the resulting registry:

- every role and mapping of each account (or role) the batch saved keeps the account's
  guardrails (``mappings.guardrails``), so tightening a guardrail that existing mappings break is
  refused naming them;
- every role a saved object touched still has a trust policy that fits its account's quota,
  measured with the sync's own generator. A change that makes an over-quota policy smaller is let
  through (taking trust away never waits), and deletions are never refused.

Refusals are data (:class:`Refusal`): each names the object at fault the way a configuration file
does (section and key) so ``apply`` can give its path, and the admin a form error.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass, field

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from mappings import guardrails
from mappings.iam import selectors as iam_selectors
from mappings.models import Account, Mapping, Role


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the resulting registry is refused: ``section``/``key`` name the object at fault as a
    configuration file does; ``account``/``account_field`` the account setting it conflicts with."""

    section: str  # "mappings" | "roles"
    key: str  # mapping name or "<account>/<role name>"
    field: str | None  # the object's field at fault, None for the whole object
    message: str
    account: str
    account_field: str  # a guardrail name or "trust_policy_limit"

    @property
    def label(self) -> str:
        return f"{'mapping' if self.section == 'mappings' else 'role'} {self.key}"

    @property
    def named_message(self) -> str:
        """The message as said away from the object (it names the object if it does not yet)."""
        return self.message if self.label in self.message else f"{self.label}: {self.message}"


@dataclass(frozen=True, slots=True)
class PolicySize:
    """A touched role's trust policy size before and after the write, against its quota."""

    role: str  # "<account>/<role name>"
    role_arn: str
    before: int | None  # None: a new role
    after: int
    limit: int

    @property
    def fits(self) -> bool:
        return self.after <= self.limit

    def describe(self) -> str:
        before = "new" if self.before is None else str(self.before)
        verdict = "" if self.fits else f" (over by {self.after - self.limit})"
        return f"policy {self.role}: {before} -> {self.after} of {self.limit} characters{verdict}"

    def as_dict(self) -> dict[str, object]:
        return {
            "role": self.role,
            "role_arn": self.role_arn,
            "before": self.before,
            "size": self.after,
            "limit": self.limit,
            "fits": self.fits,
        }


class RegistryRefused(Exception):
    """The registry a batch of writes would leave breaks a guardrail or a quota."""

    def __init__(self, refusals: list[Refusal]):
        self.refusals = refusals
        super().__init__("; ".join(f"{r.label}: {r.message}" for r in refusals))

    def as_validation_error(self, obj: object) -> ValidationError:
        """The refusals as a form would show them when ``obj`` was being saved."""
        errors: dict[str, list[str]] = {}
        own_key = _own_key(obj)
        for refusal in self.refusals:
            if (refusal.section, refusal.key) == own_key:
                where, text = refusal.field or NON_FIELD_ERRORS, refusal.message
            elif isinstance(obj, Account) and obj.name == refusal.account:
                where, text = refusal.account_field, refusal.named_message
            else:
                where, text = NON_FIELD_ERRORS, refusal.named_message
            errors.setdefault(where, []).append(_sentence(text))
        return ValidationError(errors)


def _own_key(obj: object) -> tuple[str, str] | None:
    if isinstance(obj, Mapping):
        return ("mappings", obj.name)
    if isinstance(obj, Role) and obj.account_id:
        return ("roles", f"{obj.account.name}/{obj.name}")
    return None


def _sentence(text: str) -> str:
    text = text[0].upper() + text[1:]
    return text if text.endswith(".") else text + "."


@dataclass
class WriteBatch:
    before: dict[int, int | None] = field(default_factory=dict)  # role id -> policy size before
    checked_roles: set[int] = field(default_factory=set)
    accounts: set[int] = field(default_factory=set)
    policy_sizes: list[PolicySize] = field(default_factory=list)

    def touching(self, role_ids: set[int]) -> None:
        """Before a write: remember the size of every role's policy not seen yet."""
        for role_id in role_ids - self.before.keys():
            role = Role.objects.select_related("account").filter(pk=role_id).first()
            self.before[role_id] = iam_selectors.role_desired_policy(role).size if role is not None else None

    def saved(self, obj: object, role_ids: set[int]) -> None:
        """After saving ``obj``: its roles' quotas and (for an account or role) the guardrails of
        everything below it are checked when the batch ends."""
        for role_id in role_ids:
            self.before.setdefault(role_id, None)
        self.checked_roles |= role_ids
        if isinstance(obj, Account):
            self.accounts.add(obj.pk)
        elif isinstance(obj, Role):
            self.accounts.add(obj.account_id)

    def check(self) -> None:
        """Raise :class:`RegistryRefused` if the registry as it now stands is refused."""
        refusals = self._guardrail_refusals() + self._quota_refusals()
        if refusals:
            raise RegistryRefused(refusals)

    def _guardrail_refusals(self) -> list[Refusal]:
        refusals: list[Refusal] = []
        for account in Account.objects.filter(pk__in=self.accounts).order_by("name"):
            rails = account.guardrails
            where = f"account {account.name}"
            for role in Role.objects.filter(account=account).order_by("name"):
                refusals.extend(
                    Refusal("roles", f"{account.name}/{role.name}", v.field, v.message, account.name, v.guardrail)
                    for v in guardrails.role_violations(
                        rails, max_session_seconds=role.max_session_seconds, account=where
                    )
                )
            for mapping in Mapping.objects.filter(role__account=account).order_by("name"):
                refusals.extend(
                    Refusal("mappings", mapping.name, v.field, v.message, account.name, v.guardrail)
                    for v in mapping.guardrail_violations(account, where=where)
                )
        return refusals

    def _quota_refusals(self) -> list[Refusal]:
        refusals = []
        roles = Role.objects.select_related("account").filter(pk__in=self.checked_roles)
        for role in sorted(roles, key=str):
            result = iam_selectors.role_desired_policy(role)
            before = self.before.get(role.pk)
            size = PolicySize(str(role), role.arn, before, result.size, result.limit)
            self.policy_sizes.append(size)
            if not size.fits and (before is None or size.after >= before):
                refusals.append(
                    Refusal(
                        "roles",
                        str(role),
                        None,
                        f"the trust policy of role {role} would be {result.size} characters, over account "
                        f"{role.account.name}'s "
                        f"quota of {result.limit} (trust_policy_limit): merge mappings into broader patterns, or "
                        "ask AWS for a larger ACLSizePerRole quota (up to 4096) and raise trust_policy_limit",
                        role.account.name,
                        "trust_policy_limit",
                    )
                )
        return refusals


_current: ContextVar[WriteBatch | None] = ContextVar("rolegate_write_batch", default=None)


def current() -> WriteBatch | None:
    return _current.get()


def begin() -> tuple[WriteBatch, Token[WriteBatch | None]]:
    batch = WriteBatch()
    return batch, _current.set(batch)


def end(token: Token[WriteBatch | None]) -> None:
    _current.reset(token)
