"""Breadth lint: warnings for risky but legal mappings (pure: matcher rules in, warnings out).

Only checks that can be decided exactly from the mappings themselves (docs/configuration.md,
"Lint warnings"); a warning is never a guess:

- ``wildcard_project_unprotected``: a wildcard project pattern without ``protected: true`` lets any
  branch or tag of every matching project — any developer who can push — assume the role (not
  said of a mapping bound to one project by ``project_id`` in a brokered account, where IAM checks
  the id too).
- ``untrusted_pipeline_source``: a mapping that accepts ``merge_request_event`` or
  ``external_pull_request_event`` (listed, or by accepting any source) from unprotected refs, on a
  role another mapping grants to protected refs: code from any contributor reaches a deploy role.
- ``redundant``: everything the mapping grants, another live mapping of the same role and issuer
  grants too (decided with the trust policies' own pattern-cover test, ``patterns.subsumes``,
  which never claims a cover that does not hold).
- ``never_grants``: the mapping is enabled but can never grant: it has expired, or it has
  conditions IAM can only check through session tags its role does not use.

``apply`` prints them in its plan (``--strict`` refuses them), the admin shows them next to the
mapping and explain returns them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from mappings import patterns
from mappings.matching import Rule, checks_imply, tag_checks, unenforceable

WILDCARD_PROJECT_UNPROTECTED = "wildcard_project_unprotected"
UNTRUSTED_PIPELINE_SOURCE = "untrusted_pipeline_source"
REDUNDANT = "redundant"
NEVER_GRANTS = "never_grants"
CODES = (WILDCARD_PROJECT_UNPROTECTED, UNTRUSTED_PIPELINE_SOURCE, REDUNDANT, NEVER_GRANTS)

# Pipeline sources that run code a contributor without write access can propose.
UNTRUSTED_SOURCES = ("merge_request_event", "external_pull_request_event")


@dataclass(frozen=True, slots=True)
class Warning:
    mapping: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"mapping": self.mapping, "code": self.code, "message": self.message}


def _live(rule: Rule, now: datetime) -> bool:
    return rule.enabled and (rule.expires_at is None or rule.expires_at > now) and not unenforceable(rule)


def _never_grants(rule: Rule, now: datetime) -> Warning | None:
    if not rule.enabled:
        return None  # switched off on purpose
    if rule.expires_at is not None and rule.expires_at <= now:
        return Warning(
            rule.name,
            NEVER_GRANTS,
            f"mapping {rule.name} expired at {rule.expires_at.isoformat()} and grants nothing; delete it "
            "or move expires_at",
        )
    if unenforceable(rule):
        return Warning(
            rule.name,
            NEVER_GRANTS,
            f"mapping {rule.name} grants nothing: its {'/'.join(c.field for c in tag_checks(rule))} conditions need "
            f"session tags, which role {rule.account_name}/{rule.role_name} does not use",
        )
    return None


def _wildcard_unprotected(rule: Rule) -> Warning | None:
    if rule.protected or not patterns.has_wildcards(rule.project):
        return None
    if rule.project_id is not None and rule.account_mode == "brokered":
        return None  # one project (IAM checks the id through a tag, or the mapping grants nothing)
    in_namespace = rule.namespace_id is not None and rule.account_mode == "brokered"
    where = f"{rule.project!r}" + (f" in namespace id {rule.namespace_id}" if in_namespace else "")
    return Warning(
        rule.name,
        WILDCARD_PROJECT_UNPROTECTED,
        f"mapping {rule.name} matches every project of {where} on unprotected refs too: anyone who "
        f"can push a branch to one of them can assume {rule.account_name}/{rule.role_name}; set protected: true",
    )


def accepts_untrusted_source(rule: Rule) -> list[str]:
    """The untrusted pipeline sources ``rule`` accepts (all of them when it accepts any source)."""
    if not rule.pipeline_sources:
        return list(UNTRUSTED_SOURCES)
    return [source for source in UNTRUSTED_SOURCES if source in rule.pipeline_sources]


def _untrusted_sources(rule: Rule, role_rules: list[Rule]) -> Warning | None:
    if rule.protected:
        return None
    sources = accepts_untrusted_source(rule)
    deploys = sorted(other.name for other in role_rules if other.protected and other.name != rule.name)
    if not sources or not deploys:
        return None
    how = "accepts any pipeline source, including" if not rule.pipeline_sources else "accepts"
    return Warning(
        rule.name,
        UNTRUSTED_PIPELINE_SOURCE,
        f"mapping {rule.name} {how} {' and '.join(sources)} from unprotected refs (code from any contributor) "
        f"on role {rule.account_name}/{rule.role_name}, which {deploys[0]} grants to protected refs: "
        "list the pipeline sources it needs, or set protected: true",
    )


def covers(general: Rule, specific: Rule) -> bool:
    """Whether every job ``specific`` grants its role to, ``general`` grants it to as well, for at
    least as long. Sound: ``True`` is always right (``patterns.subsumes`` is)."""
    if (general.issuer, general.role_arn) != (specific.issuer, specific.role_arn):
        return False
    if general.ref_type != "any" and general.ref_type != specific.ref_type:
        return False
    if not checks_imply(tag_checks(general), tag_checks(specific)):
        return False
    if general.pin_identity and not specific.pin_identity:  # a pin refuses jobs the other grants
        return False
    if general.expires_at is not None and (specific.expires_at is None or specific.expires_at > general.expires_at):
        return False
    return patterns.subsumes(general.project, specific.project) and patterns.subsumes(general.ref, specific.ref)


def _redundant(rule: Rule, role_rules: list[Rule]) -> Warning | None:
    for other in role_rules:
        if other.name == rule.name or not covers(other, rule):
            continue
        if covers(rule, other) and rule.name < other.name:
            continue  # two equivalent mappings: the later name is the redundant one
        return Warning(
            rule.name,
            REDUNDANT,
            f"mapping {rule.name} is redundant: mapping {other.name} grants role "
            f"{rule.account_name}/{rule.role_name} to every job it does, for at least as long; delete one of them",
        )
    return None


def lint(rules: Iterable[Rule], now: datetime) -> list[Warning]:
    """Every warning for ``rules`` (give all the mappings of the roles concerned: the role-wide
    checks compare a mapping with the others of its role), by mapping name then code."""
    by_role: dict[str, list[Rule]] = defaultdict(list)
    all_rules = list(rules)
    for rule in all_rules:
        if _live(rule, now):
            by_role[rule.role_arn].append(rule)
    found: list[Warning] = []
    for rule in all_rules:
        never = _never_grants(rule, now)
        if never is not None:
            found.append(never)
            continue
        if not rule.enabled:
            continue
        role_rules = by_role[rule.role_arn]
        for warning in (
            _wildcard_unprotected(rule),
            _untrusted_sources(rule, role_rules),
            _redundant(rule, role_rules),
        ):
            if warning is not None:
                found.append(warning)
    found.sort(key=lambda w: (w.mapping, CODES.index(w.code)))
    return found


def by_mapping(warnings: Iterable[Warning]) -> dict[str, list[Warning]]:
    grouped: dict[str, list[Warning]] = defaultdict(list)
    for warning in warnings:
        grouped[warning.mapping].append(warning)
    return dict(grouped)
