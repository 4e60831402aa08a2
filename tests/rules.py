"""Matcher rules for the pure tests, written with the flat fields a rule reads (``role_arn``,
``session_tags``, ``account_mode``, ...) rather than its shared role and account objects."""

from __future__ import annotations

import zlib
from dataclasses import replace

from mappings.matching import Rule, RuleAccount, RuleRole

# A rule's property -> the field of its role, or of its role's account, that holds it.
ROLE_FIELDS = {
    "role_name": "name",
    "role_arn": "arn",
    "max_session_seconds": "max_session_seconds",
    "session_tags": "session_tags",
}
ACCOUNT_FIELDS = {
    "account_name": "name",
    "account_id": "account_id",
    "account_mode": "mode",
    "account_audience": "audience",
    "account_source_identity": "source_identity",
}


def flat_rule(*, role_id: int | None = None, **fields) -> Rule:
    """A rule from flat fields; its role's id is ``role_id``, or derived from the role's ARN (rules
    naming one ARN name one role)."""
    account = RuleAccount(**{ACCOUNT_FIELDS[name]: fields.pop(name) for name in list(fields) if name in ACCOUNT_FIELDS})
    role_fields = {ROLE_FIELDS[name]: fields.pop(name) for name in list(fields) if name in ROLE_FIELDS}
    role_fields.setdefault("arn", f"arn:aws:iam::{account.account_id}:role/{role_fields['name']}")
    if role_id is None:
        role_id = zlib.crc32(role_fields["arn"].encode())
    return Rule(role=RuleRole(id=role_id, account=account, **role_fields), **fields)


def changed(rule: Rule, **fields) -> Rule:
    """``dataclasses.replace`` that also takes the role's and account's fields by their names on
    the rule (``session_tags=False``, ``account_mode="direct"``)."""
    account = {ACCOUNT_FIELDS[name]: fields.pop(name) for name in list(fields) if name in ACCOUNT_FIELDS}
    role = {ROLE_FIELDS[name]: fields.pop(name) for name in list(fields) if name in ROLE_FIELDS}
    if account:
        role["account"] = replace(rule.role.account, **account)
    return replace(rule, role=replace(rule.role, **role), **fields) if role else replace(rule, **fields)
