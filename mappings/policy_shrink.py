"""The shrink-only trust policy: what is live in IAM, minus every trust no longer desired (pure).

When a role's full desired policy cannot be written (over the account's quota, or IAM refuses it
for good), the sync writes :func:`shrink_only` instead, so taking trust away never waits on the
part that failed. The result admits a subset of what *both* the live and the desired policy
admit (a hypothesis property over ``mappings.iam_eval`` holds it to that):

- every ``Deny`` of the live and of the desired policy is kept (a Deny only refuses);
- an ``Allow`` of the live policy is kept only for the ``sub`` values (any condition key ending in
  ``:sub``) that some desired ``Allow`` *covers*: same or wider principals and actions, and each
  of the desired statement's conditions implied by the live one's — ``StringEquals`` values a
  subset, ``StringLike`` patterns subsumed (``mappings.patterns.subsumes``, sound). Anything this
  cannot prove (another operator, a condition the live statement lacks) is dropped: fail closed;
- nothing is taken from the desired policy but its Denies, so the result is never larger than
  the live policy plus those, and adds no trust.

A mapping whose conditions were tightened (it gained ``protected: true``, say) is therefore
missing from a shrink-only policy until the full policy is written: its old, wider trust is not
desired, and its new one was not live.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mappings import patterns, policies

_SUB_SUFFIX = ":sub"


def _as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _one_or_list(values: list[Any]) -> object:
    return values[0] if len(values) == 1 else values


def _statements(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [s for s in _as_list(document.get("Statement", [])) if isinstance(s, dict)]


def _principals_covered(live: object, desired: object) -> bool:
    """Whether every principal ``live`` names is one ``desired`` names too."""
    if desired == "*" or (isinstance(desired, dict) and "*" in _as_list(desired.get("AWS", []))):
        return True
    if not isinstance(live, dict) or not isinstance(desired, dict):
        return False
    return all(
        set(map(str, _as_list(values))) <= set(map(str, _as_list(desired.get(kind, []))))
        for kind, values in live.items()
    )


def _common_actions(live: object, desired: object) -> list[str]:
    """The actions of ``live`` that ``desired`` also allows (wildcards in ``desired`` honoured)."""
    wanted = [str(a).lower() for a in _as_list(desired)]
    return [str(a) for a in _as_list(live) if any(patterns.subsumes(d, str(a).lower()) for d in wanted)]


def _both(operator: str, live: list[str], desired: list[str]) -> list[str]:
    """Values of one ``operator`` whose condition implies both ``live``'s and ``desired``'s."""
    if operator == "StringEquals":
        return [v for v in live if v in desired]
    if operator == "StringLike":
        narrower = [v for v in live if any(patterns.subsumes(d, v) for d in desired)]
        narrower += [
            d
            for d in desired
            if not any(patterns.subsumes(n, d) for n in narrower) and any(patterns.subsumes(v, d) for v in live)
        ]
        return narrower
    return live if sorted(live) == sorted(desired) else []


def _conjunction(live: dict[str, Any], desired: Mapping[str, Any]) -> dict[str, Any] | None:
    """One Allow admitting only requests both Allows admit, built on ``live`` (None: none found).

    Conditions are ANDed: a key only one of them conditions is copied; the same operator on the
    same key is intersected (``StringEquals`` values in both, ``StringLike`` patterns one of the
    other's patterns subsumes); anything else unprovable gives None.
    """
    if any(name in s for s in (live, desired) for name in ("NotPrincipal", "NotAction", "NotResource")):
        return None
    if _principals_covered(live.get("Principal"), desired.get("Principal")):
        principal = live.get("Principal")
    elif _principals_covered(desired.get("Principal"), live.get("Principal")):
        principal = desired.get("Principal")
    else:
        return None
    actions = _common_actions(live.get("Action", []), desired.get("Action", []))
    if not actions:
        return None
    condition: dict[str, dict[str, object]] = {op: dict(block) for op, block in (live.get("Condition") or {}).items()}
    for operator, block in (desired.get("Condition") or {}).items():
        target = condition.setdefault(operator, {})
        for key, values in block.items():
            same = next((k for k in target if k.lower() == key.lower()), None)
            if same is None:
                target[key] = values
                continue
            merged = _both(operator, [str(v) for v in _as_list(target[same])], [str(v) for v in _as_list(values)])
            if not merged:
                return None
            target[same] = _one_or_list(merged)
    result = {**live, "Principal": principal, "Action": _one_or_list(actions)}
    if condition:
        result["Condition"] = condition
    return result


def _sub_key(statement: Mapping[str, Any]) -> tuple[str, str] | None:
    for operator, block in (statement.get("Condition") or {}).items():
        if operator in ("StringEquals", "StringLike"):
            for key in block:
                if key.lower().endswith(_SUB_SUFFIX):
                    return operator, key
    return None


def _with_values(statement: dict[str, Any], operator: str, key: str, values: list[str]) -> dict[str, Any]:
    condition = {op: dict(block) for op, block in statement["Condition"].items()}
    condition[operator][key] = _one_or_list(values)
    return {**statement, "Condition": condition}


def _covered_part(statement: dict[str, Any], allows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """``statement`` keeping only the ``sub`` values some Allow of ``allows`` admits in full (no
    condition added: never larger than ``statement``); None when none is."""

    def covered(candidate: dict[str, Any]) -> bool:
        return any(policies.same_policy(_conjunction(candidate, d), candidate) for d in allows)

    found = _sub_key(statement)
    if found is None:
        return statement if covered(statement) else None
    operator, key = found
    values = [str(v) for v in _as_list(statement["Condition"][operator][key])]
    kept = [v for v in values if covered(_with_values(statement, operator, key, [v]))]
    if not kept:
        return None
    return statement if kept == values else _with_values(statement, operator, key, kept)


def _document(version: object, denies: list[dict[str, Any]], allows: list[dict[str, Any]]) -> dict[str, Any]:
    unique: list[dict[str, Any]] = []
    for statement in allows:
        if not any(policies.same_policy(statement, seen) for seen in unique):
            unique.append(statement)
    if not unique:
        return policies.trusts_nobody()
    return {"Version": version or policies.POLICY_VERSION, "Statement": [*denies, *unique]}


def shrink_only(live: Mapping[str, Any], desired: Mapping[str, Any], *, limit: int) -> dict[str, Any]:
    """The live policy without every trust ``desired`` no longer grants, adding none, within
    ``limit`` characters: the intersection of the two when it fits, else the live statements
    narrowed to the ``sub`` values ``desired`` admits in full (never larger than the live policy),
    else a policy that trusts nobody."""
    live_statements = _statements(live)
    desired_statements = _statements(desired)
    desired_allows = [s for s in desired_statements if s.get("Effect") == "Allow"]
    live_allows = [s for s in live_statements if s.get("Effect") == "Allow"]
    denies = [s for s in live_statements if s.get("Effect") == "Deny"]
    denies += [s for s in desired_statements if s.get("Effect") == "Deny" and s not in denies]
    version = live.get("Version")
    both = [c for s in live_allows for d in desired_allows if (c := _conjunction(s, d)) is not None]
    candidates = [
        _document(version, denies, both),
        _document(version, denies, [c for s in live_allows if (c := _covered_part(s, desired_allows))]),
    ]
    for candidate in candidates:
        if policies.policy_size(candidate) <= limit:
            return candidate
    return policies.trusts_nobody()


def missing(policy: Mapping[str, Any], statements: list[dict[str, Any]]) -> bool:
    """Whether some Allow of ``statements`` is not admitted in full by one Allow of ``policy``
    (sound: True may be a false alarm, never a miss): which mappings a shrink-only policy lacks."""
    allows = [s for s in _statements(policy) if s.get("Effect") == "Allow"]
    return any(
        _covered_part(statement, allows) != statement for statement in statements if statement.get("Effect") == "Allow"
    )
