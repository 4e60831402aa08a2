"""Trust policies generated from mappings (pure: plain data in, a policy document out, no I/O).

A role's trust policy makes IAM itself enforce what the role's mappings say, as far as IAM can:

- *brokered* accounts trust Rolegate's OIDC provider and match the minted token's ``sub``
  (``mappings.minted.minted_sub``), which ends with the role it was minted for, so no other role's
  policy admits it; where the role has session tags, the conditions IAM can read from them
  (``aws:RequestTag/project_id``, ``/namespace_id``, ``/ref_protected``, ``/environment``,
  ``/pipeline_source``, ``/ci_config_ref_uri``, ``/environment_protected``, ``/deployment_tier``,
  ``/runner_environment``) are added, compared
  with the claims' exact values (a claim no tag can carry exactly has no tag), so IAM refuses what
  the mapping refuses.
- *direct* accounts trust each GitLab issuer's own provider and match GitLab's ``sub``
  (``mappings.minted.gitlab_sub``); conditions IAM cannot check on a GitLab token become warnings.

IAM ANDs the condition keys of a statement and ORs the values of one key, so mappings are grouped
into one statement per (provider, tag conditions) signature. The output
is minified and deterministic (same input, same bytes) and measured the way IAM counts it
(characters without whitespace) against the account's quota.

Reference: https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_create_for-idp_oidc.html
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from mappings import minted, patterns
from mappings.matching import Rule, TagCheck, checks_imply, has_tag_conditions, lossy_tag_patterns, tag_checks

POLICY_VERSION = "2012-10-17"
ASSUME_ACTION = "sts:AssumeRoleWithWebIdentity"
TAG_ACTION = "sts:TagSession"
SOURCE_IDENTITY_ACTION = "sts:SetSourceIdentity"
BROKERED = "brokered"
DIRECT = "direct"
_WHITESPACE = re.compile(r"\s")


@dataclass(frozen=True, slots=True)
class IssuerInfo:
    """What the generator needs of an issuer: its ``iss`` URL and accepted audiences."""

    name: str
    url: str
    audiences: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PolicyInput:
    """Everything a role's trust policy depends on, detached from the ORM."""

    account_id: str
    mode: str  # "brokered" | "direct"
    audience: str  # the account's audience (client id on Rolegate's provider)
    trust_policy_limit: int
    session_tags: bool
    rolegate_issuer: str  # ROLEGATE_ISSUER
    issuers: tuple[IssuerInfo, ...]
    rules: tuple[Rule, ...]  # the role's mappings, live or not
    now: datetime
    source_identity: bool = False  # the account's minted tokens carry a source identity


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    """A policy that fits: the document, its minified text and what IAM cannot enforce."""

    document: dict[str, Any]
    text: str
    size: int
    limit: int
    warnings: tuple[str, ...] = ()
    mapping_warnings: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return policy_sha256(self.document)

    @property
    def fits(self) -> Literal[True]:  # a literal, so `if result.fits` tells the two results apart
        return True


@dataclass(frozen=True, slots=True)
class PolicyTooLarge:
    """A policy that does not fit the account's quota; never written to IAM."""

    document: dict[str, Any]
    size: int
    limit: int
    warnings: tuple[str, ...] = ()
    mapping_warnings: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def excess(self) -> int:
        return self.size - self.limit

    @property
    def message(self) -> str:
        return (
            f"The trust policy is {self.size} characters, {self.excess} over the account's quota of "
            f"{self.limit}: merge mappings into broader patterns (e.g. 'group/*' instead of one mapping per "
            "project), or ask AWS to raise the account's ACLSizePerRole quota (up to 4096) and set the "
            "account's trust_policy_limit."
        )

    @property
    def fits(self) -> Literal[False]:
        return False


PolicyResult = TrustPolicy | PolicyTooLarge


def provider_host(url: str) -> str:
    """An issuer URL without its scheme: how IAM names the provider and its condition keys."""
    parts = urlsplit(url)
    return parts.netloc + parts.path.rstrip("/")


def provider_arn(account_id: str, url: str) -> str:
    """ARN of the IAM OIDC provider for issuer ``url`` in ``account_id``."""
    return f"arn:aws:iam::{account_id}:oidc-provider/{provider_host(url)}"


def live_rules(rules: Iterable[Rule], now: datetime) -> list[Rule]:
    """Enabled, unexpired rules: the only ones a policy lets in."""
    return [r for r in rules if r.enabled and (r.expires_at is None or r.expires_at > now)]


def unchecked_conditions(rule: Rule, *, mode: str, session_tags: bool) -> tuple[str, ...]:
    """Warnings for the conditions of ``rule`` that IAM cannot check in this account."""
    if mode == BROKERED and session_tags:
        return tuple(
            f"mapping {rule.name} grants nothing: its {check.field} pattern {pattern!r} holds "
            f"{minted.untaggable_pattern_chars(pattern)!r}, which no session tag value can, so IAM cannot "
            "check it as written; change the pattern"
            for check, pattern in lossy_tag_patterns(rule)
        )
    if mode == BROKERED and has_tag_conditions(rule):
        return (
            f"mapping {rule.name} grants nothing: IAM can check its "
            f"{'/'.join(check.field for check in tag_checks(rule))} conditions only through session tags, which "
            "this role does not use; turn session_tags on",
        )
    why = (
        "GitLab's token carries no session tags IAM could check"
        if mode == DIRECT
        else "the role has no session tags IAM could check"
    )
    warnings = [f"mapping {rule.name}: '{check.field}' is not enforced by IAM ({why})" for check in tag_checks(rule)]
    if mode == DIRECT and warnings:
        warnings.append(
            f"mapping {rule.name}: in direct mode only Rolegate's explain tool applies these conditions; "
            "IAM lets in every job whose project and ref match"
        )
    return tuple(warnings)


def compact(candidates: Iterable[str]) -> list[str]:
    """Sorted, deduplicated patterns without those another of them subsumes (of two equivalent
    patterns the first in sort order stays)."""
    unique = sorted(set(candidates))
    return [
        pattern
        for pattern in unique
        if not any(
            other != pattern
            and patterns.subsumes(other, pattern)
            and (other < pattern or not patterns.subsumes(pattern, other))
            for other in unique
        )
    ]


@dataclass(frozen=True, slots=True)
class _Signature:
    """The conditions a statement adds to its ``sub`` patterns (brokered, with session tags): the
    rule's tag checks, exact values sorted. Mappings with the same signature share a statement."""

    checks: tuple[TagCheck, ...]

    @classmethod
    def of(cls, rule: Rule) -> _Signature:
        return cls(
            tuple(
                check if check.like else TagCheck(check.field, check.claim, tuple(sorted(check.patterns)))
                for check in tag_checks(rule)
            )
        )

    def implied_by(self, other: _Signature) -> bool:
        """Whether every request meeting ``other`` also meets ``self``."""
        return checks_imply(self.checks, other.checks)

    def sort_key(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        return tuple((check.field, check.patterns) for check in self.checks)


_NO_CONDITIONS = _Signature(())


def _statement(
    *, federated: str, actions: Sequence[str], equals: dict[str, object], like: dict[str, object]
) -> dict[str, Any]:
    condition: dict[str, dict[str, object]] = {}
    if equals:
        condition["StringEquals"] = dict(sorted(equals.items()))
    if like:
        condition["StringLike"] = dict(sorted(like.items()))
    return {
        "Effect": "Allow",
        "Principal": {"Federated": federated},
        "Action": list(actions) if len(actions) > 1 else actions[0],
        "Condition": condition,
    }


def _one_or_list(values: Sequence[str]) -> object:
    return values[0] if len(values) == 1 else list(values)


# IAM accepts only STS assume actions in a trust policy ("AssumeRole policy may only specify STS
# AssumeRole actions"): no "sts:*".
_ASSUME_ACTIONS = ["sts:AssumeRole", "sts:AssumeRoleWithSAML", ASSUME_ACTION, TAG_ACTION]


def trusts_nobody() -> dict[str, Any]:
    """A valid trust policy that lets no one assume the role."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [{"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": _ASSUME_ACTIONS}],
    }


def _brokered_statements(data: PolicyInput, rules: list[Rule]) -> list[dict[str, Any]]:
    host = provider_host(data.rolegate_issuer)
    federated = provider_arn(data.account_id, data.rolegate_issuer)
    groups: dict[_Signature, list[str]] = {}
    for rule in rules:
        if not data.session_tags and has_tag_conditions(rule):
            continue  # grants nothing (mappings.matching.unenforceable): IAM could not check it
        if data.session_tags and lossy_tag_patterns(rule):
            continue  # grants nothing (mappings.matching, PATTERN_NOT_TAGGABLE): never a lossy stand-in
        signature = _Signature.of(rule) if data.session_tags else _NO_CONDITIONS
        ref_type = "*" if rule.ref_type == "any" else rule.ref_type
        sub = minted.minted_sub(
            rule.issuer, rule.project, ref_type, rule.ref, account_id=rule.account_id, role_name=rule.role_name
        )
        groups.setdefault(signature, []).append(sub)
    compacted = {signature: compact(subs) for signature, subs in groups.items()}
    # A pattern is also redundant when a statement with weaker conditions already covers it.
    kept: dict[_Signature, list[str]] = {}
    for signature, subs in compacted.items():
        weaker = [
            other
            for other in groups
            if other != signature
            and other.implied_by(signature)
            and (not signature.implied_by(other) or other.sort_key() < signature.sort_key())
        ]
        kept[signature] = [
            sub for sub in subs if not any(patterns.subsumes(g, sub) for w in weaker for g in compacted[w])
        ]
    actions = [ASSUME_ACTION, TAG_ACTION] if data.session_tags else [ASSUME_ACTION]
    if data.source_identity:
        actions.append(SOURCE_IDENTITY_ACTION)
    statements = []
    for signature in sorted(kept, key=_Signature.sort_key):
        subs = kept[signature]
        if not subs:
            continue
        equals: dict[str, object] = {f"{host}:aud": data.audience}
        like: dict[str, object] = {f"{host}:sub": _one_or_list(subs)}
        for check in signature.checks:
            # Tag values are the claims' exact values (or absent): a pattern compares as written.
            (like if check.like else equals)[f"aws:RequestTag/{check.claim}"] = _one_or_list(check.patterns)
        statements.append(_statement(federated=federated, actions=actions, equals=equals, like=like))
    return statements


def _direct_statements(data: PolicyInput, rules: list[Rule]) -> list[dict[str, Any]]:
    issuers = {issuer.name: issuer for issuer in data.issuers}
    groups: dict[str, list[str]] = {}
    for rule in rules:
        ref_type = "*" if rule.ref_type == "any" else rule.ref_type
        groups.setdefault(rule.issuer, []).append(minted.gitlab_sub(rule.project, ref_type, rule.ref))
    statements = []
    for name in sorted(groups):
        issuer = issuers[name]
        host = provider_host(issuer.url)
        statements.append(
            _statement(
                federated=provider_arn(data.account_id, issuer.url),
                actions=[ASSUME_ACTION],
                equals={f"{host}:aud": _one_or_list(sorted(issuer.audiences))},
                like={f"{host}:sub": _one_or_list(compact(groups[name]))},
            )
        )
    return statements


def minify(document: dict[str, Any]) -> str:
    """The document as IAM receives it from us: compact JSON, keys in our order."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def policy_size(document: dict[str, Any]) -> int:
    """Size as IAM counts it against ACLSizePerRole: characters, whitespace not counted."""
    return len(_WHITESPACE.sub("", minify(document)))


def generate(data: PolicyInput) -> PolicyResult:
    """The trust policy for a role, or :class:`PolicyTooLarge` when it cannot fit the quota."""
    rules = sorted(live_rules(data.rules, data.now), key=lambda r: r.name)
    mapping_warnings = {
        rule.name: w
        for rule in rules
        if (w := unchecked_conditions(rule, mode=data.mode, session_tags=data.session_tags))
    }
    warnings = tuple(w for name in sorted(mapping_warnings) for w in mapping_warnings[name])
    statements = _direct_statements(data, rules) if data.mode == DIRECT else _brokered_statements(data, rules)
    document = {"Version": POLICY_VERSION, "Statement": statements} if statements else trusts_nobody()
    size = policy_size(document)
    if size > data.trust_policy_limit:
        return PolicyTooLarge(
            document=document,
            size=size,
            limit=data.trust_policy_limit,
            warnings=warnings,
            mapping_warnings=mapping_warnings,
        )
    return TrustPolicy(
        document=document,
        text=minify(document),
        size=size,
        limit=data.trust_policy_limit,
        warnings=warnings,
        mapping_warnings=mapping_warnings,
    )


def normalise(document: object) -> object:
    """A policy in a canonical form, so that documents IAM treats alike compare equal: a
    one-element list is its element, lists are sorted, and dict keys are sorted on output."""
    if isinstance(document, dict):
        return {key: normalise(value) for key, value in document.items()}
    if isinstance(document, list):
        items = [normalise(item) for item in document]
        if len(items) == 1:
            return items[0]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    return document


def canonical_text(document: object) -> str:
    return json.dumps(normalise(document), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def policy_sha256(document: object) -> str:
    """Hash of the normalised document (what the role records as its live policy hash)."""
    return hashlib.sha256(canonical_text(document).encode()).hexdigest()


def same_policy(a: object, b: object) -> bool:
    return canonical_text(a) == canonical_text(b)


def pretty(document: object) -> str:
    """Indented JSON for people (admin preview, ``sync_iam --check`` diffs)."""
    return json.dumps(document, indent=2, sort_keys=False, ensure_ascii=False)
