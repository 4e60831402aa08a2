"""Explain: "would this job get this role, and if not, why?" (docs/api.md#explain).

Runs exactly the exchange's matcher (``mappings.matching.decide`` on ``mappings.selectors.registry``)
on claims as given — no signature, no replay check — so its decision is the exchange's decision for
a valid token with those claims.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from mappings import lint
from mappings.matching import (
    PIN_CLAIMS,
    Decision,
    Evaluation,
    Failure,
    Pin,
    Registry,
    decide,
    evaluate,
    pin_matches,
)
from mappings.selectors import registry as current_registry


class UnknownIssuer(Exception):
    pass


@dataclass(frozen=True)
class PinCheck:
    """An identity pin on one of the token's paths (docs/trust-model.md#identity-pins): what is
    pinned, what the token says, whether they match; and whether this decision would pin it."""

    kind: str  # project or namespace
    path: str
    token_id: str | None
    pin: Pin | None  # None: not pinned yet
    would_pin: bool = False  # granted through a pinning mapping: the exchange records it now

    @property
    def matches(self) -> bool | None:
        """None when there is nothing to compare: no pin, or a token without namespace_id."""
        return pin_matches(self.pin, self.token_id)

    def as_dict(self) -> dict:
        pin = self.pin
        return {
            "kind": self.kind,
            "path": self.path,
            "pinned_id": pin.gitlab_id if pin else None,
            "pinned_at": pin.pinned_at.isoformat().replace("+00:00", "Z") if pin and pin.pinned_at else None,
            "pinned_by": pin.pinned_by if pin else None,
            "token_id": self.token_id,
            "matches": self.matches,
            "would_pin": self.would_pin,
        }


@dataclass(frozen=True)
class Explanation:
    decision: Decision
    evaluations: tuple[Evaluation, ...]  # decide()'s, then the requested role's other mappings
    requested_role_arn: str | None = None
    # Lint warnings (mappings.lint) about the mappings in ``evaluations``.
    warnings: tuple[lint.Warning, ...] = ()
    pins: tuple[PinCheck, ...] = ()  # the pins of the token's project and namespace paths

    def as_dict(self) -> dict:
        return {
            "decision": "granted" if self.decision.granted else "denied",
            "reason": self.decision.reason,
            "detail": self.decision.detail,
            "mapping": self.decision.rule.name if self.decision.rule else None,
            "role_arn": self.decision.role_arn,
            "mappings": [
                {
                    "name": e.rule.name,
                    "role_arn": e.rule.role_arn,
                    "matched": e.matched,
                    "pin_identity": e.rule.pin_identity,
                    "failed": [{"field": f.field, "pattern": f.pattern, "value": f.value} for f in e.failed],
                }
                for e in self.evaluations
            ],
            "warnings": [warning.as_dict() for warning in self.warnings],
            "pins": [check.as_dict() for check in self.pins],
        }


def explain_claims(
    *,
    issuer: str,
    claims: Mapping[str, object],
    role_arn: str | None = None,
    now: datetime | None = None,
    registry: Registry | None = None,
) -> Explanation:
    """The exchange's decision for ``claims`` from ``issuer``, with every mapping that could apply:
    the ones the matcher considered, plus every mapping of ``role_arn`` (so "why not this role?" is
    answered even when its project pattern is elsewhere)."""
    if registry is None:
        registry = current_registry()
        if registry.issuer_named(issuer) is None:
            raise UnknownIssuer(f"No issuer named {issuer!r} is registered.")
    now = now or timezone.now()
    decision = decide(registry, issuer=issuer, claims=claims, now=now, role_arn=role_arn)
    evaluations = list(decision.evaluations)
    if role_arn:
        seen = {e.rule.id for e in evaluations}
        for rule in registry.rules_for_role(role_arn):
            if rule.id in seen:
                continue
            evaluation = evaluate(rule, claims, now, registry.pins)
            if rule.issuer != issuer:  # the matcher never considers another issuer's mappings
                evaluation = Evaluation(rule, (Failure("issuer", rule.issuer, issuer), *evaluation.failed))
            evaluations.append(evaluation)
    return Explanation(
        decision=decision,
        evaluations=tuple(evaluations),
        requested_role_arn=role_arn,
        warnings=_warnings(registry, evaluations, now),
        pins=_pin_checks(registry, issuer, claims, decision),
    )


def _pin_checks(
    registry: Registry, issuer: str, claims: Mapping[str, object], decision: Decision
) -> tuple[PinCheck, ...]:
    recorded = {(pin.kind, pin.path) for pin in decision.new_pins}
    checks = []
    for kind, (path_claim, id_claim) in PIN_CLAIMS.items():
        path, token_id = claims.get(path_claim), claims.get(id_claim)
        if not isinstance(path, str) or not path:
            continue
        checks.append(
            PinCheck(
                kind=kind,
                path=path,
                token_id=token_id if isinstance(token_id, str) else None,
                pin=registry.pins.get(issuer, kind, path),
                would_pin=(kind, path) in recorded,
            )
        )
    return tuple(checks)


def _warnings(registry: Registry, evaluations: list[Evaluation], now: datetime) -> tuple[lint.Warning, ...]:
    """Lint warnings about the evaluated mappings, each linted among all the mappings of its role."""
    names = {e.rule.name for e in evaluations}
    rules = [rule for arn in sorted({e.rule.role_arn for e in evaluations}) for rule in registry.rules_for_role(arn)]
    return tuple(w for w in lint.lint(rules, now) if w.mapping in names)
