"""The matcher: which mappings grant which role to a token's claims (pure, no I/O).

The exchange, explain and the policy tests all decide through :func:`decide`, so they can never
disagree. A :class:`Registry` is an immutable, indexed snapshot of every mapping (built by
``mappings.selectors.registry``); lookups touch only the mappings of the token's issuer whose
project pattern's literal prefix is a prefix of the token's ``project_path``, and those bound by id
alone (project ``*``) whose ``project_id`` or ``namespace_id`` is the token's. The registry also
holds the identity pins (:class:`Pins`) that pinning mappings check (docs/trust-model.md#identity-pins).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Generic, TypeVar

from mappings import minted, patterns

# Reason codes of a denial decided by the matcher (the audit's ``reason``).
NO_MATCHING_MAPPING = "no_matching_mapping"
AMBIGUOUS_ROLE = "ambiguous_role"
DIRECT_MODE_ACCOUNT = "direct_mode_account"
SUB_TOO_LONG = "sub_too_long"
CLAIM_NOT_TAGGABLE = "claim_not_taggable"
IDENTITY_CHANGED = "identity_changed"

# Why a check failed (``Failure.why``): the value does not match the pattern; the value matches
# but no session tag can carry it exactly, so IAM could not check it; the mapping's pattern holds
# characters no session tag can, so IAM cannot compare it as written.
MISMATCH = "mismatch"
NOT_TAGGABLE = "not_taggable"
PATTERN_NOT_TAGGABLE = "pattern_not_taggable"
# ... or the path is pinned to another GitLab id than the token's (a pinning mapping's check).
ID_CHANGED = "id_changed"

# Identity pins (docs/trust-model.md, "Identity pins"): what a pin is on, and the claims it reads
# (the path it is keyed by, the id it holds).
PROJECT = "project"
NAMESPACE = "namespace"
PIN_CLAIMS = {PROJECT: ("project_path", "project_id"), NAMESPACE: ("namespace_path", "namespace_id")}


@dataclass(frozen=True, slots=True)
class RuleAccount:
    """The account of a role, as much of it as a decision needs."""

    name: str
    account_id: str
    mode: str
    audience: str
    source_identity: bool = False  # minted tokens carry a source identity


@dataclass(frozen=True, slots=True)
class RuleRole:
    """A role with its account, as much of them as a decision needs: one object shared by every
    rule of the role, so a change to the role or its account replaces this one object
    (:meth:`Registry.patched`) instead of every rule that names it."""

    id: int = field(compare=False)  # which role this is (the registry's key), not part of its value
    name: str
    arn: str
    max_session_seconds: int
    session_tags: bool
    account: RuleAccount


@dataclass(frozen=True, slots=True)
class Rule:
    """One mapping with everything a decision needs, detached from the ORM: the mapping's own
    conditions, and the :class:`RuleRole` it grants (read through the properties below)."""

    id: int
    name: str
    issuer: str
    role: RuleRole
    project: str
    ref: str
    ref_type: str
    protected: bool
    environment: str | None
    pipeline_sources: tuple[str, ...]
    expires_at: datetime | None
    enabled: bool
    # Conditions on the pipeline definition, environment and runner (docs/trust-model.md).
    ci_config_ref_uri: str | None = None  # pattern on ci_config_ref_uri
    environment_protected: bool = False  # require environment_protected == "true"
    deployment_tiers: tuple[str, ...] = ()  # any of them; empty: any
    runner_environment: str | None = None  # exactly this
    pin_identity: bool = False  # pin the project's and namespace's GitLab ids on first use
    # GitLab's ids, which it never reuses (docs/trust-model.md, "Ids GitLab never reuses"): exactly
    # this project_id / namespace_id claim. A mapping naming one may leave ``project`` as ``*``.
    project_id: str | None = None
    namespace_id: str | None = None

    @property
    def role_arn(self) -> str:
        return self.role.arn

    @property
    def role_name(self) -> str:
        return self.role.name

    @property
    def max_session_seconds(self) -> int:
        return self.role.max_session_seconds

    @property
    def session_tags(self) -> bool:
        return self.role.session_tags

    @property
    def account_name(self) -> str:
        return self.role.account.name

    @property
    def account_id(self) -> str:
        return self.role.account.account_id

    @property
    def account_mode(self) -> str:
        return self.role.account.mode

    @property
    def account_audience(self) -> str:
        return self.role.account.audience

    @property
    def account_source_identity(self) -> bool:
        return self.role.account.source_identity


@dataclass(frozen=True, slots=True)
class RegisteredIssuer:
    """A GitLab instance whose tokens are accepted, detached from the ORM: what verifying a token
    needs (``exchange.gitlab.verify_id_token``)."""

    name: str
    url: str  # equals its tokens' iss
    audiences: tuple[str, ...]
    jwks_url: str | None  # None: discovered from <url>/.well-known/openid-configuration


@dataclass(frozen=True, slots=True)
class Pin:
    """The GitLab id a path of an issuer was first granted with: ``kind`` is :data:`PROJECT`
    (``project_path`` -> ``project_id``) or :data:`NAMESPACE` (``namespace_path`` -> ``namespace_id``)."""

    issuer: str
    kind: str
    path: str
    gitlab_id: str
    pinned_at: datetime | None = None  # None: not recorded yet (a pin a decision asks to record)
    pinned_by: str = ""  # how: the mapping of the first use, or who accepted a change

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.issuer, self.kind, self.path)

    def describe(self) -> str:
        """``project 'platform/web' is pinned to project_id 20 since 2026-11-26``."""
        _, id_claim = PIN_CLAIMS[self.kind]
        since = f" since {self.pinned_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z" if self.pinned_at is not None else ""
        return f"{self.kind} {self.path!r} is pinned to {id_claim} {self.gitlab_id}{since}"


class Pins:
    """An immutable set of pins by (issuer, kind, path), split like :class:`Shards`."""

    __slots__ = ("_by_key",)

    def __init__(self, pins: Iterable[Pin] = ()):
        self._by_key: Shards[tuple[str, str, str], Pin] = Shards((pin.key, pin) for pin in pins)

    def get(self, issuer: str, kind: str, path: str | None) -> Pin | None:
        return None if path is None else self._by_key.get((issuer, kind, path))

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[Pin]:
        return self._by_key.values()

    def changed(self, *, put: Iterable[Pin] = (), drop: Iterable[tuple[str, str, str]] = ()) -> Pins:
        """A new set: ``drop`` (keys) removed, then ``put`` set."""
        new: Pins = object.__new__(Pins)
        new._by_key = self._by_key.changed(put={pin.key: pin for pin in put}, drop=drop)
        return new


@dataclass(frozen=True, slots=True)
class Failure:
    """A condition of a mapping that the claims do not meet."""

    field: str
    pattern: str
    value: str | None
    why: str = MISMATCH
    pin: Pin | None = None  # the pin an ID_CHANGED failure compared with

    def sentence(self) -> str:
        if self.why == ID_CHANGED and self.pin is not None:
            _, id_claim = PIN_CLAIMS[self.pin.kind]
            has = f"{id_claim} {self.value}" if self.value is not None else f"no {id_claim}"
            by = f" ({self.pin.pinned_by})" if self.pin.pinned_by else ""
            return f"{self.pin.describe()}{by}, and this token has {has}"
        if self.why == NOT_TAGGABLE:
            return (
                f"{self.field} {self.pattern!r} matches {self.value!r}, but no AWS session tag can carry that value "
                f"exactly (at most {minted.MAX_TAG_VALUE_LENGTH} letters, digits, spaces and _ . : / = + - @), "
                "so IAM could not check it"
            )
        if self.why == PATTERN_NOT_TAGGABLE:
            return (
                f"{self.field} pattern {self.pattern!r} holds {minted.untaggable_pattern_chars(self.pattern)!r}, "
                "which no AWS session tag value can, so IAM cannot check it and the mapping grants nothing; "
                "change the pattern"
            )
        return f"{self.field} {self.pattern!r} does not match {self.value!r}"


@dataclass(frozen=True, slots=True)
class Evaluation:
    rule: Rule
    failed: tuple[Failure, ...]

    @property
    def matched(self) -> bool:
        return not self.failed


@dataclass(frozen=True, slots=True)
class Decision:
    granted: bool
    reason: str  # "granted" or a denial code above
    detail: str
    rule: Rule | None = None
    evaluations: tuple[Evaluation, ...] = field(default=())
    sub: str | None = None  # the minted token's sub, when granted
    # When granted through a pinning mapping: the pins this decision records (first use).
    new_pins: tuple[Pin, ...] = ()

    @property
    def role_arn(self) -> str | None:
        return self.rule.role_arn if self.rule else None


def _claim(claims: Mapping[str, object], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class TagCheck:
    """A condition of a mapping that IAM checks through a session tag (brokered roles with tags)."""

    field: str  # the mapping's field
    claim: str  # the claim, and the session tag (same name) that carries its value
    patterns: tuple[str, ...]  # what IAM compares the tag with (any of them)
    like: bool = False  # patterns (StringLike) rather than exact values (StringEquals)

    def met_by(self, value: str | None) -> bool:
        """Whether a claim ``value`` meets the condition (an absent claim never does)."""
        if value is None:
            return False
        if self.like:
            return any(patterns.matches(pattern, value) for pattern in self.patterns)
        return value in self.patterns


def tag_checks(rule: Rule) -> tuple[TagCheck, ...]:
    """``rule``'s conditions that IAM can check only through session tags, in the order a person
    would check them: the one list of them (matcher, policy generator, warnings, lint)."""
    checks = []
    if rule.project_id is not None:
        checks.append(TagCheck("project_id", "project_id", (rule.project_id,)))
    if rule.namespace_id is not None:
        checks.append(TagCheck("namespace_id", "namespace_id", (rule.namespace_id,)))
    if rule.protected:
        checks.append(TagCheck("protected", "ref_protected", ("true",)))
    if rule.environment is not None:
        checks.append(TagCheck("environment", "environment", (rule.environment,), like=True))
    if rule.pipeline_sources:
        checks.append(TagCheck("pipeline_sources", "pipeline_source", tuple(rule.pipeline_sources)))
    if rule.ci_config_ref_uri is not None:
        checks.append(TagCheck("ci_config_ref_uri", "ci_config_ref_uri", (rule.ci_config_ref_uri,), like=True))
    if rule.environment_protected:
        checks.append(TagCheck("environment_protected", "environment_protected", ("true",)))
    if rule.deployment_tiers:
        checks.append(TagCheck("deployment_tiers", "deployment_tier", tuple(rule.deployment_tiers)))
    if rule.runner_environment is not None:
        checks.append(TagCheck("runner_environment", "runner_environment", (rule.runner_environment,)))
    return tuple(checks)


def checks_imply(weaker: Iterable[TagCheck], stronger: Iterable[TagCheck]) -> bool:
    """Whether every claim set meeting all of ``stronger`` meets all of ``weaker`` too. Sound:
    ``True`` is always right (``patterns.subsumes`` is)."""
    by_claim = {check.claim: check for check in stronger}
    for check in weaker:
        other = by_claim.get(check.claim)
        if other is None:
            return False
        if check.like or other.like:
            if not all(any(patterns.subsumes(p, q) for p in check.patterns) for q in other.patterns):
                return False
        elif not set(other.patterns) <= set(check.patterns):
            return False
    return True


def has_tag_conditions(rule: Rule) -> bool:
    """Whether ``rule`` has conditions that IAM can check only through session tags."""
    return bool(tag_checks(rule))


def tags_enforced(rule: Rule) -> bool:
    """Whether IAM checks ``rule``'s tag conditions: a brokered role with session tags."""
    role = rule.role
    return role.session_tags and role.account.mode == "brokered"


def lossy_tag_patterns(rule: Rule) -> tuple[tuple[TagCheck, str], ...]:
    """Patterns of ``rule``'s tag conditions holding characters no tag value can (wildcards
    aside): IAM could not compare them as written, so on a role with session tags such a mapping
    grants nothing and is left out of the trust policy (refused when written since)."""
    return tuple(
        (check, pattern)
        for check in tag_checks(rule)
        for pattern in check.patterns
        if minted.untaggable_pattern_chars(pattern)
    )


def unenforceable(rule: Rule) -> bool:
    """A brokered role without session tags cannot make IAM check any of :func:`tag_checks`
    (``project_id``, ``protected``, ``environment``, ``ci_config_ref_uri``, ...): its policy
    could hold only the ``sub``. Such a mapping grants nothing
    (and is left out of the trust policy), so that IAM always checks every condition Rolegate
    does where it can see them (docs/trust-model.md)."""
    role = rule.role
    return not role.session_tags and role.account.mode == "brokered" and has_tag_conditions(rule)


def evaluate(rule: Rule, claims: Mapping[str, object], now: datetime, pins: Pins | None = None) -> Evaluation:
    """Every condition of ``rule`` that ``claims`` fail, in the order a person would check them;
    with ``pins``, a pinning rule whose project matches also checks the ids pinned for the token's
    paths (:func:`pin_failures`)."""
    failed: list[Failure] = []
    if unenforceable(rule):
        failed.append(Failure("session_tags", "true", "false"))
    if not rule.enabled:
        failed.append(Failure("enabled", "true", "false"))
    if rule.expires_at is not None and rule.expires_at <= now:
        failed.append(Failure("expires_at", rule.expires_at.isoformat(), now.isoformat()))
    project_path = _claim(claims, "project_path")
    project_matched = project_path is not None and patterns.matches(rule.project, project_path)
    if not project_matched:
        failed.append(Failure("project", rule.project, project_path))
    elif rule.pin_identity and pins is not None:
        failed.extend(pin_failures(pins, rule.issuer, claims))
    ref_type = _claim(claims, "ref_type")
    if rule.ref_type != "any" and ref_type != rule.ref_type:
        failed.append(Failure("ref_type", rule.ref_type, ref_type))
    ref = _claim(claims, "ref")
    if ref is None or not patterns.matches(rule.ref, ref):
        failed.append(Failure("ref", rule.ref, ref))
    checks = tag_checks(rule)  # built once: the claims' checks here, IAM's in _tag_failures
    for check in checks:
        value = _claim(claims, check.claim)
        if not check.met_by(value):
            failed.append(Failure(check.field, ",".join(check.patterns), value))
    if tags_enforced(rule):
        failed.extend(_tag_failures(checks, claims, {f.field for f in failed}))
    return Evaluation(rule=rule, failed=tuple(failed))


def _tag_failures(checks: Iterable[TagCheck], claims: Mapping[str, object], failed_fields: set[str]) -> list[Failure]:
    """IAM checks these conditions (a rule's :func:`tag_checks`) on the session tags alone: a
    pattern it cannot compare as written fails, and so does a claim that met the condition but
    cannot be a tag exactly (the token carries no tag for it, so IAM would refuse the token
    Rolegate minted)."""
    failures = []
    for check in checks:
        shown = ",".join(check.patterns)
        value = _claim(claims, check.claim)
        if any(minted.untaggable_pattern_chars(p) for p in check.patterns):
            failures.append(Failure(check.field, shown, value, why=PATTERN_NOT_TAGGABLE))
        elif check.field not in failed_fields and not minted.taggable(value):
            failures.append(Failure(check.field, shown, value, why=NOT_TAGGABLE))
    return failures


def pin_failures(pins: Pins, issuer: str, claims: Mapping[str, object]) -> list[Failure]:
    """The pins of ``issuer`` on the token's project and namespace paths that hold another id than
    the token's. A token without ``project_id`` fails a project pin; one without ``namespace_id``
    (optional in GitLab's tokens) is not compared with a namespace pin."""
    failures = []
    for kind, (path_claim, id_claim) in PIN_CLAIMS.items():
        pin = pins.get(issuer, kind, _claim(claims, path_claim))
        if pin is None:
            continue
        token_id = _claim(claims, id_claim)
        if pin_matches(pin, token_id) is False:
            failures.append(pin_conflict(pin, token_id))
    return failures


def pin_matches(pin: Pin | None, token_id: str | None) -> bool | None:
    """Whether a token whose id claim is ``token_id`` (``None``: absent) meets ``pin``; ``None``
    when there is nothing to compare: no pin, or a namespace pin and a token without
    ``namespace_id`` (optional in GitLab's tokens). An absent ``project_id`` does not match."""
    if pin is None or (token_id is None and pin.kind == NAMESPACE):
        return None
    return token_id == pin.gitlab_id


def pin_conflict(pin: Pin, token_id: str | None) -> Failure:
    """The failure of a token whose id (``None``: absent) is not the one ``pin`` holds."""
    _, id_claim = PIN_CLAIMS[pin.kind]
    return Failure(f"pinned_{id_claim}", pin.gitlab_id, token_id, why=ID_CHANGED, pin=pin)


def pins_to_record(pins: Pins, issuer: str, claims: Mapping[str, object], *, pinned_by: str) -> tuple[Pin, ...]:
    """The pins a grant through a pinning mapping records: each of the token's paths not pinned yet,
    with the token's id (a namespace only when the token has ``namespace_id``)."""
    found = []
    for kind, (path_claim, id_claim) in PIN_CLAIMS.items():
        path, token_id = _claim(claims, path_claim), _claim(claims, id_claim)
        if path and token_id is not None and pins.get(issuer, kind, path) is None:
            found.append(Pin(issuer, kind, path, token_id, pinned_by=pinned_by))
    return tuple(found)


K = TypeVar("K")
V = TypeVar("V")
_SHARDS = 64

# A rule's bucket in the registry's index: the literal prefix of its project pattern, or, for a rule
# whose pattern starts with a wildcard (``*``: any path) and that names an id, that id (("project_id",
# "20")), so that mappings bound by id alone are candidates only for tokens carrying that id.
Bucket = str | tuple[str, str]


def _bucket(rule: Rule) -> Bucket:
    prefix = patterns.literal_prefix(rule.project)
    if not prefix:
        if rule.project_id is not None:
            return ("project_id", rule.project_id)
        if rule.namespace_id is not None:
            return ("namespace_id", rule.namespace_id)
    return prefix


def _prefix_lengths(buckets: Iterable[Bucket]) -> Counter[int]:
    """How many path buckets (not id buckets) have each prefix length."""
    return Counter(len(bucket) for bucket in buckets if isinstance(bucket, str))


class Shards(Generic[K, V]):
    """An immutable dict split in 64 parts by the key's hash: :meth:`changed` copies only the
    parts a change touches, so a new version of a 100,000-entry map costs a few small copies and
    shares everything else with the old one."""

    __slots__ = ("_parts", "_size")

    def __init__(self, items: Iterable[tuple[K, V]] = ()):
        parts: list[dict[K, V]] = [{} for _ in range(_SHARDS)]
        for key, value in items:
            parts[hash(key) % _SHARDS][key] = value
        self._parts = tuple(parts)
        self._size = sum(len(part) for part in parts)

    def get(self, key: K, default: V | None = None) -> V | None:
        return self._parts[hash(key) % _SHARDS].get(key, default)

    def __len__(self) -> int:
        return self._size

    def values(self) -> Iterator[V]:
        for part in self._parts:
            yield from part.values()

    def items(self) -> Iterator[tuple[K, V]]:
        for part in self._parts:
            yield from part.items()

    def changed(self, *, put: Mapping[K, V] | None = None, drop: Iterable[K] = ()) -> Shards[K, V]:
        """A new map: ``drop`` removed, then ``put`` set."""
        parts = list(self._parts)
        copied: set[int] = set()

        def part(key: K) -> dict[K, V]:
            index = hash(key) % _SHARDS
            if index not in copied:
                parts[index] = dict(parts[index])
                copied.add(index)
            return parts[index]

        for key in drop:
            part(key).pop(key, None)
        for key, value in (put or {}).items():
            part(key)[key] = value
        new: Shards[K, V] = object.__new__(Shards)
        new._parts = tuple(parts)
        new._size = sum(len(p) for p in parts)
        return new


class Registry:
    """An immutable index of rules (issuer -> literal project prefix, or id, -> rules), with the
    registered issuers of the same registry version.

    :meth:`patched` makes the next version from this one by copying only what the changed rules
    touch (:class:`Shards`); the rest is shared between the two snapshots, never mutated. A
    changed role is not copied into its rules: the new version records the role's new value by
    its id (or that it is gone), and every read (:meth:`candidates`, :meth:`rules`,
    :meth:`rules_for_role`) gives each rule with its role as this version knows it. A change to
    a role, or to an account, costs one entry per role, however many mappings the role has."""

    def __init__(
        self,
        rules: Iterable[Rule],
        version: int = 0,
        issuers: Iterable[RegisteredIssuer] = (),
        pins: Pins | Iterable[Pin] = (),
    ):
        self.version = version
        self._set_issuers(issuers)
        self.pins = pins if isinstance(pins, Pins) else Pins(pins)
        index: dict[str, dict[Bucket, list[Rule]]] = defaultdict(lambda: defaultdict(list))
        by_id: dict[int, Rule] = {}
        for rule in sorted(rules, key=lambda r: r.name):
            index[rule.issuer][_bucket(rule)].append(rule)
            by_id[rule.id] = rule
        self._index = {issuer: Shards((p, tuple(rs)) for p, rs in buckets.items()) for issuer, buckets in index.items()}
        # issuer -> {prefix length: how many path buckets have it}; candidates() walks the lengths.
        self._length_counts = {issuer: _prefix_lengths(buckets) for issuer, buckets in index.items()}
        self._prefix_lengths = {issuer: tuple(sorted(c)) for issuer, c in self._length_counts.items()}
        self._by_id = Shards(by_id.items())
        self._by_role: dict[str, tuple[Rule, ...]] | None = None
        # Roles changed since the rules above were indexed: role id -> its value in this version,
        # None when the role is gone (and its rules with it).
        self._roles: dict[int, RuleRole | None] = {}
        # mapping id -> (an indexed rule, the same rule with its role's value in a later version),
        # made on first read and shared with the versions patched from this one: a cache, used
        # only while its indexed rule and role are still the ones a version holds.
        self._rebound: dict[int, tuple[Rule, Rule]] = {}

    def _set_issuers(self, issuers: Iterable[RegisteredIssuer]) -> None:
        self._issuers_by_url = {issuer.url: issuer for issuer in issuers}
        self._issuers_by_name = {issuer.name: issuer for issuer in self._issuers_by_url.values()}

    def patched(
        self,
        *,
        version: int,
        removed: Iterable[int] = (),
        rules: Iterable[Rule] = (),
        roles: Mapping[int, RuleRole | None] | None = None,
        issuers: Iterable[RegisteredIssuer] | None = None,
        pins: Pins | None = None,
    ) -> Registry:
        """A new snapshot: this one without the rules of ids ``removed``, with ``rules`` (new or
        replacing the rule of the same id), and with ``roles`` (role id -> the role's new value,
        or None when the role is gone and its rules with it) in every rule of those roles;
        ``issuers`` and ``pins`` replace this one's when given. ``rules`` carry their role's value
        in the new version. Equal to ``Registry(<the resulting rules>, version, issuers, pins)``."""
        new = object.__new__(Registry)
        new.version = version
        new.pins = self.pins if pins is None else pins
        if issuers is None:
            new._issuers_by_url, new._issuers_by_name = self._issuers_by_url, self._issuers_by_name
        else:
            new._set_issuers(issuers)
        added = {rule.id: rule for rule in rules}
        removed = set(removed)
        roles = dict(roles or {})
        # The id of a role that is gone names a new role (ids reused): the old role's rules stay gone.
        revived = {
            key for key, role in roles.items() if role is not None and key in self._roles and self._roles[key] is None
        }
        if revived:
            removed.update(rule.id for rule in self._by_id.values() if rule.role.id in revived)
        gone: set[int] = set()
        buckets: dict[str, set[Bucket]] = defaultdict(set)
        for pk in {*removed, *added}:
            old = self._by_id.get(pk)
            if old is not None:
                gone.add(pk)
                buckets[old.issuer].add(_bucket(old))
        fresh: dict[tuple[str, Bucket], list[Rule]] = defaultdict(list)
        for rule in added.values():
            prefix = _bucket(rule)
            buckets[rule.issuer].add(prefix)
            fresh[(rule.issuer, prefix)].append(rule)
        new._by_id = self._by_id.changed(put=added, drop=gone)
        index = dict(self._index)
        length_counts = dict(self._length_counts)
        prefix_lengths = dict(self._prefix_lengths)
        for issuer, prefixes in buckets.items():
            old_buckets = index.get(issuer) or Shards()
            counts = Counter(length_counts.get(issuer, {}))
            put: dict[Bucket, tuple[Rule, ...]] = {}
            drop: list[Bucket] = []
            for prefix in prefixes:
                before = old_buckets.get(prefix) or ()
                kept = [rule for rule in before if rule.id not in gone]
                merged = sorted(kept + fresh.get((issuer, prefix), []), key=lambda r: r.name)
                if merged:
                    put[prefix] = tuple(merged)
                else:
                    drop.append(prefix)
                if isinstance(prefix, str):
                    counts[len(prefix)] += bool(merged) - bool(before)
            counts = Counter({length: n for length, n in counts.items() if n > 0})
            new_buckets = old_buckets.changed(put=put, drop=drop)
            if len(new_buckets):
                index[issuer] = new_buckets
                length_counts[issuer] = counts
                prefix_lengths[issuer] = tuple(sorted(counts))
            else:
                for table in (index, length_counts, prefix_lengths):
                    table.pop(issuer, None)
        new._index, new._length_counts, new._prefix_lengths = index, length_counts, prefix_lengths
        new._by_role = None
        new._roles = {**self._roles, **roles} if roles else self._roles
        new._rebound = self._rebound
        for pk in gone:
            new._rebound.pop(pk, None)
        return new

    def _current(self, rule: Rule) -> Rule | None:
        """``rule`` with its role as this version knows it, or None when its role is gone."""
        role = self._roles.get(rule.role.id, rule.role)
        if role is rule.role:
            return rule
        if role is None:
            return None
        cached = self._rebound.get(rule.id)
        if cached is not None and cached[0] is rule and cached[1].role is role:
            return cached[1]
        current = replace(rule, role=role)
        self._rebound[rule.id] = (rule, current)
        return current

    @property
    def size(self) -> int:
        """How many rules."""
        if all(role is not None for role in self._roles.values()):
            return len(self._by_id)
        return sum(1 for rule in self._by_id.values() if self._roles.get(rule.role.id, rule.role) is not None)

    def rules(self) -> Iterable[Rule]:
        """Every rule, in no particular order."""
        if not self._roles:
            return self._by_id.values()
        return (current for rule in self._by_id.values() if (current := self._current(rule)) is not None)

    def candidates(
        self, issuer: str, project_path: str | None, project_id: str | None = None, namespace_id: str | None = None
    ) -> list[Rule]:
        """Rules of ``issuer`` whose project pattern could match ``project_path`` (and, of those
        indexed by id, whose id is ``project_id`` or ``namespace_id``), by name."""
        buckets = self._index.get(issuer)
        if not buckets or project_path is None:
            return []
        found: list[Rule] = []
        for length in self._prefix_lengths[issuer]:
            if length > len(project_path):
                break
            found.extend(buckets.get(project_path[:length]) or ())
        if project_id is not None:
            found.extend(buckets.get(("project_id", project_id)) or ())
        if namespace_id is not None:
            found.extend(buckets.get(("namespace_id", namespace_id)) or ())
        if self._roles:
            found = [current for rule in found if (current := self._current(rule)) is not None]
        found.sort(key=lambda r: r.name)
        return found

    @property
    def issuers_by_url(self) -> Mapping[str, RegisteredIssuer]:
        """The registered issuers by URL (their tokens' ``iss``)."""
        return self._issuers_by_url

    def issuer_named(self, name: str) -> RegisteredIssuer | None:
        return self._issuers_by_name.get(name)

    def rules_for_role(self, role_arn: str) -> tuple[Rule, ...]:
        """The rules of one role, by name (the console's pages; built on first use)."""
        if self._by_role is None:
            by_role: dict[str, list[Rule]] = defaultdict(list)
            for rule in sorted(self.rules(), key=lambda r: r.name):
                by_role[rule.role_arn].append(rule)
            self._by_role = {arn: tuple(rs) for arn, rs in by_role.items()}
        return self._by_role.get(role_arn, ())


def decide(
    registry: Registry,
    *,
    issuer: str,
    claims: Mapping[str, object],
    now: datetime,
    role_arn: str | None = None,
    explain: bool = True,
) -> Decision:
    """The exchange's decision for a verified token from ``issuer`` with ``claims``.

    With ``role_arn``, granted when a live mapping for that role matches; without it, granted when
    the matching mappings all name one role. A role in a ``direct``-mode account is never brokered.

    ``evaluations`` holds every candidate mapping's evaluation, for the explain and replay pages.
    With ``explain=False`` and a ``role_arn`` only that role's candidates are evaluated (the
    exchange): the decision is the same, since no other role's mapping can change it.
    """
    candidates = registry.candidates(
        issuer, _claim(claims, "project_path"), _claim(claims, "project_id"), _claim(claims, "namespace_id")
    )
    if role_arn is not None and not explain:
        candidates = [rule for rule in candidates if rule.role_arn == role_arn]
    evaluations = tuple(evaluate(rule, claims, now, registry.pins) for rule in candidates)
    matched = [e.rule for e in evaluations if e.matched]
    if role_arn is not None:
        matched = [rule for rule in matched if rule.role_arn == role_arn]
        if not matched:
            changed = _only_identity_changed(e for e in evaluations if e.rule.role_arn == role_arn)
            if changed is not None:
                return _identity_changed(changed, evaluations)
            untaggable = _only_untaggable(e for e in evaluations if e.rule.role_arn == role_arn)
            if untaggable is not None:
                return _claim_not_taggable(untaggable, evaluations)
            return Decision(
                False,
                NO_MATCHING_MAPPING,
                f"No enabled, unexpired mapping of issuer {issuer!r} grants {role_arn} to "
                f"project {_claim(claims, 'project_path')!r} on {_claim(claims, 'ref_type')} "
                f"{_claim(claims, 'ref')!r}.",
                evaluations=evaluations,
            )
    else:
        roles = sorted({rule.role_arn for rule in matched})
        if not roles:
            changed = _only_identity_changed(evaluations)
            if changed is not None:
                return _identity_changed(changed, evaluations)
            untaggable = _only_untaggable(evaluations)
            if untaggable is not None:
                return _claim_not_taggable(untaggable, evaluations)
            return Decision(
                False,
                NO_MATCHING_MAPPING,
                f"No enabled, unexpired mapping of issuer {issuer!r} matches project "
                f"{_claim(claims, 'project_path')!r} on {_claim(claims, 'ref_type')} {_claim(claims, 'ref')!r}.",
                evaluations=evaluations,
            )
        if len(roles) > 1:
            return Decision(
                False,
                AMBIGUOUS_ROLE,
                f"{len(roles)} roles match this job ({', '.join(roles)}); name the one you want in 'audience'.",
                evaluations=evaluations,
            )
    rule = matched[0]
    if rule.account_mode == "direct":
        return Decision(
            False,
            DIRECT_MODE_ACCOUNT,
            f"{rule.role_arn} is in account {rule.account_name!r}, which is in direct mode: its roles trust "
            "GitLab itself, so call AWS STS with the GitLab token instead of Rolegate.",
            rule=None,
            evaluations=evaluations,
        )
    sub = minted.minted_sub(
        issuer,
        str(claims.get("project_path")),
        str(claims.get("ref_type")),
        str(claims.get("ref")),
        account_id=rule.account_id,
        role_name=rule.role_name,
    )
    if len(sub) > minted.MAX_SUB_LENGTH:
        return Decision(
            False,
            SUB_TOO_LONG,
            f"The minted sub would be {len(sub)} characters, more than AWS's {minted.MAX_SUB_LENGTH}; "
            "shorten the issuer name, project path, ref or role name.",
            evaluations=evaluations,
        )
    pinning = next((r for r in matched if r.pin_identity), None)  # any pinning mapping of the granted role
    new_pins = () if pinning is None else pins_to_record(registry.pins, issuer, claims, pinned_by=_first_use(pinning))
    return Decision(
        True,
        "granted",
        f"Mapping {rule.name!r} grants {rule.role_arn}.",
        rule=rule,
        evaluations=evaluations,
        sub=sub,
        new_pins=new_pins,
    )


def _first_use(rule: Rule) -> str:
    return f"first granted through mapping {rule.name}"


def _only_untaggable(evaluations: Iterable[Evaluation]) -> Evaluation | None:
    """The first evaluation that failed only because a claim cannot be a session tag exactly."""
    return next(
        (e for e in evaluations if e.failed and all(f.why == NOT_TAGGABLE for f in e.failed)),
        None,
    )


def _only_identity_changed(evaluations: Iterable[Evaluation]) -> Evaluation | None:
    """The first evaluation that failed only on pinned ids (and, at most, on claims no tag can
    carry): the mapping would grant but for an identity that changed."""
    return next(
        (
            e
            for e in evaluations
            if any(f.why == ID_CHANGED for f in e.failed) and all(f.why in (ID_CHANGED, NOT_TAGGABLE) for f in e.failed)
        ),
        None,
    )


def identity_changed_detail(rule: Rule, failures: Iterable[Failure]) -> str:
    """The sentence of an ``identity_changed`` refusal: both ids, the pin's date, what to do."""
    return (
        f"Mapping {rule.name!r} would grant {rule.role_arn}, but it pins GitLab ids on first use: "
        + "; ".join(f.sentence() for f in failures if f.why == ID_CHANGED)
        + ". The path may have been renamed, deleted and re-created, or claimed by someone else; if the change "
        "is legitimate, a platform engineer accepts it (manage.py accept_identity_change, or the admin's "
        "identity pins)."
    )


def _identity_changed(evaluation: Evaluation, evaluations: tuple[Evaluation, ...]) -> Decision:
    return Decision(
        False, IDENTITY_CHANGED, identity_changed_detail(evaluation.rule, evaluation.failed), evaluations=evaluations
    )


def _claim_not_taggable(evaluation: Evaluation, evaluations: tuple[Evaluation, ...]) -> Decision:
    rule = evaluation.rule
    return Decision(
        False,
        CLAIM_NOT_TAGGABLE,
        f"Mapping {rule.name!r} would grant {rule.role_arn}, but IAM checks its conditions on session tags and "
        + "; ".join(f.sentence() for f in evaluation.failed)
        + ". Rolegate refuses rather than mint a token IAM would refuse or misread.",
        evaluations=evaluations,
    )
