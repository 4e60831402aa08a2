"""A small IAM evaluator for trust policies, so tests can ask "would IAM let this token in?".

It covers what Rolegate's trust policies use: ``Effect`` Allow/Deny (an explicit Deny wins, no
Allow means no), ``Principal`` (``Federated``/``AWS``/``"*"``), ``Action`` with wildcards, and the
``StringEquals``/``StringNotEquals``/``StringLike``/``StringNotLike`` operators with ``...IfExists``;
and, for the revoke-older-sessions permission policy (``mappings.session_policy``), statements
without a ``Principal`` (identity policies: they apply to the session), ``Resource`` with
wildcards and the ``Date...`` operators (ISO 8601 or epoch seconds), through :func:`session_allows`.
A condition on a key the request does not carry is false (true for the ``Not`` operators and
``IfExists``), the values of one key are ORed, keys and operators are ANDed. An operator it does
not know is an error, never a silent pass.

Reference: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html
and https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mappings import minted, patterns, policies

_OPERATORS = {"StringEquals", "StringNotEquals", "StringLike", "StringNotLike"}
_DATE_OPERATORS: dict[str, Callable[[datetime, datetime], bool]] = {
    "DateEquals": lambda a, b: a == b,
    "DateNotEquals": lambda a, b: a != b,
    "DateLessThan": lambda a, b: a < b,
    "DateLessThanEquals": lambda a, b: a <= b,
    "DateGreaterThan": lambda a, b: a > b,
    "DateGreaterThanEquals": lambda a, b: a >= b,
}


class UnsupportedPolicy(ValueError):
    """The policy uses something this evaluator does not model."""


@dataclass(frozen=True, slots=True)
class Request:
    """One STS call as IAM evaluates it against a trust policy."""

    action: str
    federated: str
    context: Mapping[str, str] = field(default_factory=dict)
    resource: str = "*"


def _as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _principal_matches(principal: object, federated: str) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        raise UnsupportedPolicy(f"Principal {principal!r}")
    if "*" in _as_list(principal.get("AWS", [])):
        return True
    return federated in _as_list(principal.get("Federated", []))


def _action_matches(actions: object, action: str) -> bool:
    return any(patterns.matches(a.lower(), action.lower()) for a in _as_list(actions))


def _date(value: object) -> datetime:
    text = str(value)
    if text.isdigit():
        return datetime.fromtimestamp(int(text), tz=UTC)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise UnsupportedPolicy(f"date without a time zone: {text!r}")
    return moment


def _condition_holds(operator: str, key: str, expected: object, context: Mapping[str, str]) -> bool:
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    if base not in _OPERATORS and base not in _DATE_OPERATORS:
        raise UnsupportedPolicy(f"condition operator {operator!r}")
    value = next((v for k, v in context.items() if k.lower() == key.lower()), None)
    if base in _DATE_OPERATORS:
        if value is None:
            return if_exists
        compare = _DATE_OPERATORS[base]
        return any(compare(_date(value), _date(e)) for e in _as_list(expected))
    negated = "Not" in base
    if value is None:
        return if_exists or negated
    values = [str(v) for v in _as_list(expected)]
    hit = any(patterns.matches(pattern, value) for pattern in values) if base.endswith("Like") else value in values
    return not hit if negated else hit


def _statement_applies(statement: Mapping[str, Any], request: Request) -> bool:
    if "NotPrincipal" in statement or "NotAction" in statement or "NotResource" in statement:
        raise UnsupportedPolicy("NotPrincipal/NotAction/NotResource")
    # No Principal: an identity (permission) policy, which applies to the session it is on.
    if "Principal" in statement and not _principal_matches(statement["Principal"], request.federated):
        return False
    if not _action_matches(statement.get("Action", []), request.action):
        return False
    if "Resource" in statement and not any(
        patterns.matches(r, request.resource) for r in _as_list(statement["Resource"])
    ):
        return False
    for operator, block in statement.get("Condition", {}).items():
        for key, expected in block.items():
            if not _condition_holds(operator, key, expected, request.context):
                return False
    return True


def allows(policy: Mapping[str, Any], request: Request) -> bool:
    """Whether ``policy`` lets ``request`` through: some Allow applies and no Deny does."""
    allowed = False
    for statement in _as_list(policy.get("Statement", [])):
        effect = statement.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise UnsupportedPolicy(f"Effect {effect!r}")
        if _statement_applies(statement, request):
            if effect == "Deny":
                return False
            allowed = True
    return allowed


def session_allows(permission_policies: Sequence[Mapping[str, Any]], request: Request) -> bool:
    """Whether a role session may make ``request`` under the role's permission policies (one
    ``Statement`` list each, evaluated together): some Allow applies and no Deny does. The
    session's ``aws:TokenIssueTime`` goes in the request's context."""
    return allows({"Statement": [s for p in permission_policies for s in _as_list(p.get("Statement", []))]}, request)


def web_identity_requests(
    *,
    provider_url: str,
    account_id: str,
    sub: str,
    aud: str,
    request_tags: Mapping[str, str] | None,
    source_identity: str | None = None,
) -> list[Request]:
    """The requests STS evaluates for ``AssumeRoleWithWebIdentity`` with such a token: the assume
    itself; when the token carries session tags, ``sts:TagSession``; when it carries a source
    identity (``https://aws.amazon.com/source_identity``), ``sts:SetSourceIdentity`` (with
    ``sts:SourceIdentity`` in the context); all with the same context.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_temp_control-access_monitor.html"""
    host = policies.provider_host(provider_url)
    context = {f"{host}:sub": sub, f"{host}:aud": aud}
    for key, value in (request_tags or {}).items():
        context[f"aws:RequestTag/{key}"] = value
    if source_identity is not None:
        context["sts:SourceIdentity"] = source_identity
    federated = policies.provider_arn(account_id, provider_url)
    requests = [Request(policies.ASSUME_ACTION, federated, context)]
    if request_tags:
        requests.append(Request(policies.TAG_ACTION, federated, context))
    if source_identity is not None:
        requests.append(Request(policies.SOURCE_IDENTITY_ACTION, federated, context))
    return requests


def minted_token_allowed(
    policy: Mapping[str, Any],
    *,
    rolegate_issuer: str,
    account_id: str,
    audience: str,
    issuer_name: str,
    claims: Mapping[str, object],
    mapping_name: str,
    session_tags: bool,
    role_name: str,
    source_identity: bool = False,
) -> bool:
    """Whether IAM would accept a token Rolegate minted for ``claims`` and the role ``role_name``
    in ``account_id`` (brokered mode), under that role's trust policy ``policy``."""
    sub = minted.minted_sub(
        issuer_name,
        str(claims["project_path"]),
        str(claims["ref_type"]),
        str(claims["ref"]),
        account_id=account_id,
        role_name=role_name,
    )
    tags = (
        {key: values[0] for key, values in minted.principal_tags(claims, mapping_name).items()}
        if session_tags
        else None
    )
    return minted_sub_allowed(
        policy,
        rolegate_issuer=rolegate_issuer,
        account_id=account_id,
        sub=sub,
        aud=audience,
        request_tags=tags,
        source_identity=minted.source_identity(claims) if source_identity else None,
    )


def minted_sub_allowed(
    policy: Mapping[str, Any],
    *,
    rolegate_issuer: str,
    account_id: str,
    sub: str,
    aud: str,
    request_tags: Mapping[str, str] | None,
    source_identity: str | None = None,
) -> bool:
    """Whether IAM would accept, in ``account_id``, a token from Rolegate with this ``sub``,
    ``aud``, session tags (``None``: a token without the tags claim) and source identity."""
    requests = web_identity_requests(
        provider_url=rolegate_issuer,
        account_id=account_id,
        sub=sub,
        aud=aud,
        request_tags=request_tags,
        source_identity=source_identity,
    )
    return all(allows(policy, request) for request in requests)


def gitlab_token_allowed(
    policy: Mapping[str, Any], *, issuer_url: str, account_id: str, aud: str, claims: Mapping[str, object]
) -> bool:
    """Whether IAM would accept a GitLab ID token with ``claims`` directly (direct mode)."""
    sub = minted.gitlab_sub(str(claims["project_path"]), str(claims["ref_type"]), str(claims["ref"]))
    requests = web_identity_requests(
        provider_url=issuer_url, account_id=account_id, sub=sub, aud=aud, request_tags=None
    )
    return all(allows(policy, request) for request in requests)
