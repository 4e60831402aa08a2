"""Replay: which recent decisions would a proposed configuration change?

Each audit event stores the claims the matcher decides on (docs/api.md#audit-event-fields), so the proposed registry
is asked exactly what the exchange asked then — through the same ``decide``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from exchange.models import AuditEvent
from mappings import matching
from mappings.claims import AUDITED
from mappings.config import ConfigError, rules_from_document
from mappings.matching import Registry, decide
from mappings.selectors import registry as current_registry

# Decisions the matcher made; events refused before it (bad signature, expired, ...) do not
# depend on the configuration.
MATCHER_REASONS = (
    "granted",
    matching.NO_MATCHING_MAPPING,
    matching.AMBIGUOUS_ROLE,
    matching.DIRECT_MODE_ACCOUNT,
    matching.CLAIM_NOT_TAGGABLE,
    matching.IDENTITY_CHANGED,
)


@dataclass(frozen=True)
class Change:
    event: AuditEvent
    before: str  # "granted <role> via <mapping>" or "denied (<reason>)"
    after: str
    decision: matching.Decision


def event_claims(event: AuditEvent) -> dict[str, str]:
    """The claims of an audit event, as the matcher saw them (absent claims stay absent); the
    audit event keeps every claim the matcher reads (docs/api.md#audit-event-fields)."""
    return {name: getattr(event, name) for name in AUDITED if getattr(event, name) is not None}


def _describe(granted: bool, reason: str, role_arn: str | None, mapping: str | None) -> str:
    return f"granted {role_arn} via {mapping}" if granted else f"denied ({reason})"


def replay_events(*, registry: Registry, events: Iterable[AuditEvent]) -> list[Change]:
    """The events whose decision (outcome, role or mapping) differs under ``registry``, judged at
    the time each event happened."""
    changes = []
    for event in events:
        decision = decide(
            registry,
            issuer=event.issuer or "",  # no issuer: unknown to every registry
            claims=event_claims(event),
            now=event.time,
            role_arn=event.requested_role_arn or None,
        )
        was_granted = event.outcome == AuditEvent.Outcome.GRANTED
        rule = decision.rule
        same = (
            decision.granted == was_granted
            and (
                not was_granted or (rule is not None and rule.role_arn == event.role_arn and rule.name == event.mapping)
            )
            and (was_granted or decision.reason == event.reason)
        )
        if not same:
            changes.append(
                Change(
                    event=event,
                    before=_describe(was_granted, event.reason, event.role_arn, event.mapping),
                    after=_describe(decision.granted, decision.reason, decision.role_arn, rule.name if rule else None),
                    decision=decision,
                )
            )
    return changes


# A replay runs in the request: at most this many events (the newest), so a page never hangs.
MAX_REPLAY_EVENTS = 100_000


def replayable_events(*, days: int, now: datetime | None = None, limit: int = MAX_REPLAY_EVENTS):
    """Matcher-decided audit events of the last ``days`` days, newest first, at most ``limit``."""
    since = (now or timezone.now()) - timedelta(days=days)
    return (
        AuditEvent.objects.filter(time__gte=since, reason__in=MATCHER_REASONS)
        .exclude(issuer=None)
        .order_by("-time", "-id")[:limit]
        .iterator(chunk_size=2000)
    )


class ReplayUnavailable(Exception):
    """The proposed configuration cannot be turned into a registry; ``errors`` name each problem."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("; ".join(errors))


def proposed_registry(text: str) -> Registry:
    """A registry from a proposed configuration file (docs/configuration.md), validated exactly as
    ``apply`` does, with today's identity pins (they are recorded by the exchange, not configured)."""
    try:
        return Registry(rules_from_document(text), pins=current_registry().pins)
    except ConfigError as exc:
        raise ReplayUnavailable([f"{path}: {message}" for path, message in exc.errors]) from None
