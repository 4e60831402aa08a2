"""Incremental registry refresh: a patched snapshot is the snapshot a full rebuild would make.

``Registry.patched`` (pure) for any rules and any change, roles included; ``selectors.registry()``
for every kind of registry write through the services, reading only the change log and the rows
it reaches: a change to a role or an account reads the role, never its mappings."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappings import patterns, pins, selectors, services
from mappings.matching import PROJECT, Pin, RegisteredIssuer, Registry, Rule, RuleAccount, RuleRole, decide
from mappings.models import Account, Issuer, Mapping, RegistryChange, Role
from tests.factories import AccountFactory, IssuerFactory, RoleFactory

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def probes(*registries: Registry) -> set[str]:
    """Project paths that reach every bucket of the registries' rules, and some that reach none."""
    paths = {"", "g", "zzz/unknown"}
    for registry in registries:
        for rule in registry.rules():
            prefix = patterns.literal_prefix(rule.project)
            paths |= {prefix, rule.project.replace("*", "x").replace("?", "y"), rule.project + "/x"}
    return paths


def same(a: Registry, b: Registry) -> None:
    """``a`` and ``b`` answer every read alike: rules (with their roles' values and ids), the
    candidates of any project path, the rules of each role, the issuers."""
    assert a.version == b.version
    assert a.size == b.size
    assert {r.id: (r, r.role.id) for r in a.rules()} == {r.id: (r, r.role.id) for r in b.rules()}
    issuers = {r.issuer for r in [*a.rules(), *b.rules()]} | {"nobody"}
    for issuer in issuers:
        for path in probes(a, b):
            assert a.candidates(issuer, path) == b.candidates(issuer, path), (issuer, path)
    arns = {rule.role_arn for rule in [*a.rules(), *b.rules()]}
    assert {arn: a.rules_for_role(arn) for arn in arns} == {arn: b.rules_for_role(arn) for arn in arns}
    assert a.issuers_by_url == b.issuers_by_url
    assert {pin.key: pin for pin in a.pins} == {pin.key: pin for pin in b.pins}


ACCOUNTS = (
    RuleAccount(name="prod", account_id="123456789012", mode="brokered", audience="sts.amazonaws.com"),
    RuleAccount(name="prod", account_id="123456789012", mode="direct", audience="sts.amazonaws.com"),
    RuleAccount(name="renamed", account_id="123456789012", mode="brokered", audience="other", source_identity=True),
    RuleAccount(name="staging", account_id="210987654321", mode="brokered", audience="sts.amazonaws.com"),
)


def make_role(key: int, name: str = "deploy", max_session: int = 3600, tags: bool = True, account: int = 0) -> RuleRole:
    account_value = ACCOUNTS[account]
    return RuleRole(
        id=key,
        name=f"{name}-{key}",
        arn=f"arn:aws:iam::{account_value.account_id}:role/{name}-{key}",
        max_session_seconds=max_session,
        session_tags=tags,
        account=account_value,
    )


def make_rule(
    pk: int, issuer: str, project: str, role: RuleRole, project_id: str | None = None, namespace_id: str | None = None
) -> Rule:
    return Rule(
        id=pk,
        name=f"m{pk:03d}",
        issuer=issuer,
        role=role,
        project=project,
        ref="main",
        ref_type="branch",
        protected=pk % 2 == 0,
        environment=None,
        pipeline_sources=(),
        expires_at=None,
        enabled=True,
        project_id=project_id,
        namespace_id=namespace_id,
    )


ROLE_IDS = (1, 2, 3)
role_values = st.tuples(  # a role's value, but for its id: make_role(id, *value)
    st.sampled_from(["deploy", "read"]),
    st.sampled_from([3600, 7200]),
    st.booleans(),
    st.integers(0, len(ACCOUNTS) - 1),
)
new_rules = st.lists(
    st.tuples(
        st.integers(1, 40),
        st.sampled_from(["a", "b"]),
        st.sampled_from(["g/web", "g/*", "g/api", "h/*", "*", "g/w*"]),
        st.sampled_from(ROLE_IDS),
        # Mappings bound on ids: with project '*' they are indexed by id, not by path.
        st.sampled_from([None, None, "20", "21"]),
        st.sampled_from([None, None, "72"]),
    ),
    unique_by=lambda t: t[0],
    max_size=8,
)
steps = st.lists(
    st.tuples(
        st.sets(st.integers(1, 45), max_size=6),  # mapping ids removed
        new_rules,  # mappings added or replaced
        st.dictionaries(st.sampled_from(ROLE_IDS), st.none() | role_values, max_size=3),  # roles changed or gone
        st.booleans(),  # the issuers change
    ),
    max_size=6,
)
ISSUERS = (
    (RegisteredIssuer(name="a", url="https://a", audiences=("x",), jwks_url=None),),
    (
        RegisteredIssuer(name="a", url="https://a", audiences=("x", "y"), jwks_url=None),
        RegisteredIssuer(name="b", url="https://b", audiences=("y",), jwks_url=None),
    ),
)


@given(before=new_rules, steps=steps)
def test_a_patched_registry_equals_a_rebuilt_one(before, steps):
    """Any sequence of patches -- mappings removed, added, replaced; roles changed (their name,
    session limit, tags, account), gone, or given to a new role with the same id -- leaves a
    registry that reads like one built from the resulting rules; and every earlier version still
    reads as it did (reads of later versions make nothing visible in them)."""
    current: dict[int, RuleRole | None] = {key: make_role(key) for key in ROLE_IDS}
    expected = {pk: make_rule(pk, issuer, project, current[key], *ids) for pk, issuer, project, key, *ids in before}
    issuers = ISSUERS[0]
    registry = Registry(expected.values(), version=1, issuers=issuers)
    versions = [(registry, dict(expected), issuers)]
    for number, (removed, added, roles, new_issuers) in enumerate(steps, start=2):
        roles = {key: None if value is None else make_role(key, *value) for key, value in roles.items()}
        current.update(roles)
        for pk, rule in list(expected.items()):
            if rule.role.id in roles:
                if roles[rule.role.id] is None:
                    del expected[pk]
                else:
                    expected[pk] = replace(rule, role=roles[rule.role.id])
        for pk in removed:
            expected.pop(pk, None)
        # A gone role has no new mappings; the others' carry the role's value in this version.
        rules = [
            make_rule(pk, issuer, project, current[key], *ids)
            for pk, issuer, project, key, *ids in added
            if current[key]
        ]
        expected.update((rule.id, rule) for rule in rules)
        if new_issuers:
            issuers = ISSUERS[1] if issuers is ISSUERS[0] else ISSUERS[0]
        registry = registry.patched(
            version=number, removed=removed, rules=rules, roles=roles, issuers=issuers if new_issuers else None
        )
        same(registry, Registry(expected.values(), version=number, issuers=issuers))
        versions.append((registry, dict(expected), issuers))
    for old, rules, old_issuers in versions:
        same(old, Registry(rules.values(), version=old.version, issuers=old_issuers))


def test_a_role_change_is_one_entry_not_a_copy_of_its_rules():
    """The mechanism: a role change leaves the index and its rules untouched; a read gives each
    rule with the role's new value, made once per rule."""
    role = make_role(1)
    rules = [make_rule(pk, "a", f"g/p{pk}", role) for pk in range(1, 200)]
    old = Registry(rules, version=1)
    new = old.patched(version=2, roles={1: replace(role, session_tags=False)})
    assert new._index == old._index
    assert all(a is b for a, b in zip(new._by_id._parts, old._by_id._parts, strict=True))
    [rule] = new.candidates("a", "g/p7")
    assert (rule.session_tags, old.candidates("a", "g/p7")[0].session_tags) == (False, True)
    assert new.candidates("a", "g/p7")[0] is rule
    gone = new.patched(version=3, roles={1: None})
    assert (gone.size, gone.candidates("a", "g/p7"), list(gone.rules())) == (0, [], [])
    assert new.size == 199


def decision(registry: Registry, issuer: str, project: str, **claims: str):
    claims = {"project_path": project, "ref": "main", "ref_type": "branch", "ref_protected": "true", **claims}
    return decide(registry, issuer=issuer, claims=claims, now=NOW)


def ids_of(name: str, expected: tuple[str | None, str | None]) -> None:
    """The patched snapshot carries the mapping's ids (the new fields flow through the patch)."""
    [rule] = [rule for rule in selectors.registry().rules() if rule.name == name]
    assert (rule.project_id, rule.namespace_id) == expected
    found = selectors.registry().candidates(rule.issuer, "any/path", *expected)
    assert [r.name for r in found] == [name]


@pytest.mark.django_db
def test_every_kind_of_registry_write_is_patched_in(monkeypatch):
    issuer, other_issuer = IssuerFactory(), IssuerFactory(name="other", url="https://other.example.com")
    account, staging = AccountFactory(), AccountFactory(name="staging")
    web, api = RoleFactory(account=account, name="deploy-web"), RoleFactory(account=account, name="deploy-api")
    keep = services.mapping_create(actor="t", name="keep", issuer=issuer, role=web, project="platform/web")
    gone = services.mapping_create(actor="t", name="gone", issuer=issuer, role=api, project="platform/*")
    build = selectors._built
    selectors._cached = None
    selectors.registry()
    monkeypatch.setattr(selectors, "_built", lambda *a: pytest.fail("rebuilt instead of patched"))

    steps = [
        lambda: services.mapping_create(actor="t", name="new", issuer=other_issuer, role=web, project="tools/*"),
        lambda: services.registry_update(keep, actor="t", project="platform/web-*", role=api),
        # Bound by id alone (indexed by its id), then by another id: the patch moves it each time.
        lambda: services.registry_update(keep, actor="t", project="*", project_id="20"),
        lambda: ids_of("keep", ("20", None)),
        lambda: services.registry_update(keep, actor="t", project_id=None, namespace_id="72"),
        lambda: ids_of("keep", (None, "72")),
        # Back to a path (the account goes direct below, where a mapping bound by id alone is refused).
        lambda: services.registry_update(keep, actor="t", project="platform/web-*", namespace_id=None),
        lambda: services.registry_delete(gone, actor="t"),
        lambda: services.registry_update(web, actor="t", name="deploy-site"),
        lambda: services.registry_update(web, actor="t", session_tags=False),
        lambda: services.registry_update(web, actor="t", max_session_seconds=7200),
        lambda: services.registry_update(web, actor="t", account=staging),
        lambda: services.registry_update(account, actor="t", name="renamed"),
        lambda: services.registry_update(account, actor="t", mode=Account.Mode.DIRECT),
        lambda: services.registry_update(staging, actor="t", source_identity=True, audience="aud"),
        lambda: services.registry_update(other_issuer, actor="t", audiences=["https://elsewhere"]),
        lambda: pins.pins_record(
            [Pin(other_issuer.name, PROJECT, "tools/x", "5"), Pin(issuer.name, PROJECT, "a", "1")]
        ),
        lambda: pins.identity_change_accept(
            issuer=other_issuer.name, kind=PROJECT, path="tools/x", new_id="6", actor="t", note="moved"
        ),
        lambda: services.registry_update(other_issuer, actor="t", name="renamed-issuer"),
        lambda: services.role_create(actor="t", account=staging, name="fresh"),
        lambda: services.registry_delete(api, actor="t"),
    ]
    for step in steps:
        step()
        same(selectors.registry(), build(selectors._registry_stamp()).registry)
    [new] = selectors.registry().rules()
    assert (new.name, new.issuer, new.role_name, new.session_tags, new.max_session_seconds) == (
        "new",
        "renamed-issuer",
        "deploy-site",
        False,
        7200,
    )
    assert (new.account_name, new.account_source_identity, new.account_audience) == ("staging", True, "aud")
    assert selectors.registry().issuer_named("renamed-issuer").audiences == ("https://elsewhere",)
    assert selectors.registry().pins.get("renamed-issuer", PROJECT, "tools/x").gitlab_id == "6"


@pytest.mark.django_db
def test_a_role_or_account_change_reads_the_role_not_its_mappings():
    issuer, account = IssuerFactory(), AccountFactory()
    role = RoleFactory(account=account, name="deploy-web")
    for n in range(5):
        services.mapping_create(actor="t", name=f"m{n}", issuer=issuer, role=role, project=f"platform/p{n}")
    selectors._cached = None
    selectors.registry()
    for obj, change in ((role, {"session_tags": False}), (account, {"mode": Account.Mode.DIRECT}), (issuer, {})):
        services.registry_update(obj, actor="t", **change)
        with CaptureQueriesContext(connection) as queries:
            registry = selectors.registry()
        read = " ".join(q["sql"] for q in queries.captured_queries)
        assert Mapping._meta.db_table not in read, obj
        assert [rule.name for rule in registry.candidates(issuer.name, "platform/p3")] == ["m3"]
    [rule] = selectors.registry().candidates(issuer.name, "platform/p3")
    assert (rule.session_tags, rule.account_mode) == (False, "direct")


@pytest.mark.django_db
def test_a_role_change_is_seen_by_the_next_decision_of_a_process_holding_a_snapshot():
    """Each change to a role or its account, made after the snapshot was taken, decides the
    very next decision: tags turned off (its mappings with tag conditions grant nothing), the
    session limit, the account in direct mode, the role renamed, moved, deleted."""
    issuer, account, staging = IssuerFactory(), AccountFactory(), AccountFactory(name="staging")
    role = RoleFactory(account=account, name="deploy-web", max_session_seconds=3600)
    services.mapping_create(actor="t", name="web", issuer=issuer, role=role, project="platform/web", protected=True)
    selectors._cached = None
    assert decision(selectors.registry(), issuer.name, "platform/web").granted

    services.registry_update(role, actor="t", max_session_seconds=7200)
    assert decision(selectors.registry(), issuer.name, "platform/web").rule.max_session_seconds == 7200
    services.registry_update(role, actor="t", session_tags=False)
    refused = decision(selectors.registry(), issuer.name, "platform/web")
    assert (refused.granted, refused.evaluations[0].failed[0].field) == (False, "session_tags")
    services.registry_update(role, actor="t", session_tags=True, name="deploy-site")
    assert decision(selectors.registry(), issuer.name, "platform/web").role_arn.endswith(":role/deploy-site")
    services.registry_update(role, actor="t", account=staging)
    assert decision(selectors.registry(), issuer.name, "platform/web").rule.account_name == "staging"
    services.registry_update(staging, actor="t", mode=Account.Mode.DIRECT)
    assert decision(selectors.registry(), issuer.name, "platform/web").reason == "direct_mode_account"
    services.registry_update(staging, actor="t", mode=Account.Mode.BROKERED)
    assert decision(selectors.registry(), issuer.name, "platform/web").granted
    services.registry_delete(role, actor="t")
    assert decision(selectors.registry(), issuer.name, "platform/web").reason == "no_matching_mapping"
    assert selectors.registry().size == 0


# Writes through the services, each picking its objects by index (modulo how many there are).
OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "mapping_create",
                "mapping_update",
                "mapping_delete",
                "role_create",
                "role_update",
                "role_move",
                "role_delete",
                "account_update",
                "issuer_update",
            ]
        ),
        st.integers(0, 7),
        st.integers(0, 7),
        st.integers(0, 3),
    ),
    min_size=1,
    max_size=8,
)


def _write(operation: str, i: int, j: int, k: int) -> None:
    issuers, accounts = list(Issuer.objects.all()), list(Account.objects.all())
    roles, mappings = list(Role.objects.all()), list(Mapping.objects.all())
    projects = ["platform/web", "platform/*", "tools/api", "*"]
    if operation == "mapping_create" and roles:
        services.mapping_create(
            actor="t",
            name=f"m-{Mapping.objects.count()}-{i}{j}{k}",
            issuer=issuers[i % len(issuers)],
            role=roles[j % len(roles)],
            project=projects[k],
            protected=bool(k % 2),
        )
    elif operation == "mapping_update" and mappings:
        mapping = mappings[i % len(mappings)]
        services.registry_update(mapping, actor="t", project=projects[k], role=roles[j % len(roles)], enabled=k != 3)
    elif operation == "mapping_delete" and mappings:
        services.registry_delete(mappings[i % len(mappings)], actor="t")
    elif operation == "role_create":
        services.role_create(actor="t", account=accounts[i % len(accounts)], name=f"role-{Role.objects.count()}-{j}")
    elif operation == "role_update" and roles:
        role = roles[i % len(roles)]
        change = [
            {"session_tags": not role.session_tags},
            {"max_session_seconds": 900 * (j + 1)},
            {"name": f"{role.name}-r{j}"},
            {"session_tags": not role.session_tags, "max_session_seconds": 3600},
        ][k]
        services.registry_update(role, actor="t", **change)
    elif operation == "role_move" and roles:
        services.registry_update(roles[i % len(roles)], actor="t", account=accounts[j % len(accounts)])
    elif operation == "role_delete" and roles:
        services.registry_delete(roles[i % len(roles)], actor="t")
    elif operation == "account_update":
        account = accounts[i % len(accounts)]
        change = [
            {"mode": Account.Mode.DIRECT if account.mode == Account.Mode.BROKERED else Account.Mode.BROKERED},
            {"name": f"{account.name}-r{j}"},
            {"audience": f"aud-{j}"},
            {"source_identity": not account.source_identity, "mode": Account.Mode.BROKERED},
        ][k]
        services.registry_update(account, actor="t", **change)
    elif operation == "issuer_update":
        issuer = issuers[i % len(issuers)]
        change = [{"audiences": [f"https://aud-{j}"]}, {"name": f"{issuer.name}-r{j}"}][k % 2]
        services.registry_update(issuer, actor="t", **change)


@pytest.mark.django_db
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
def test_a_snapshot_patched_through_any_writes_equals_a_rebuilt_one(operations):
    """Any sequence of writes to mappings, roles, accounts and issuers through the services:
    after each, the process's patched snapshot reads like a snapshot built from scratch, and
    decides every probe alike."""
    with transaction.atomic():
        issuers = [IssuerFactory(), IssuerFactory(name="other", url="https://other.example.com")]
        accounts = [AccountFactory(), AccountFactory(name="staging")]
        roles = [RoleFactory(account=accounts[0], name="deploy-web"), RoleFactory(account=accounts[1], name="read")]
        for n, (issuer, role, project) in enumerate(
            [(issuers[0], roles[0], "platform/web"), (issuers[0], roles[1], "platform/*"), (issuers[1], roles[0], "*")]
        ):
            services.mapping_create(actor="t", name=f"base-{n}", issuer=issuer, role=role, project=project)
        selectors._cached = None
        selectors.registry()
        for operation in operations:
            try:
                with transaction.atomic():
                    _write(*operation)
            except ValidationError:
                continue  # refused (a guardrail, a name taken): nothing changed
            patched, rebuilt = selectors.registry(), selectors._built(selectors._registry_stamp()).registry
            same(patched, rebuilt)
            for issuer in Issuer.objects.values_list("name", flat=True):
                for project in ("platform/web", "platform/api", "tools/api"):
                    assert decision(patched, issuer, project) == decision(rebuilt, issuer, project)
        transaction.set_rollback(True)
    selectors._cached = None


@pytest.mark.django_db
def test_a_bulk_write_or_a_pruned_log_rebuilds():
    issuer, role = IssuerFactory(), RoleFactory(account=AccountFactory())
    services.mapping_create(actor="t", name="one", issuer=issuer, role=role, project="a/*")
    selectors._cached = None
    first = selectors.registry()
    Mapping.objects.create(name="bulk", issuer=issuer, role=role, project="b/*")
    services.registry_changed(role_ids=[])  # a bulk write: anything may have changed
    assert sorted(r.name for r in selectors.registry().rules()) == ["bulk", "one"]

    second = selectors.registry()
    services.mapping_create(actor="t", name="two", issuer=issuer, role=role, project="c/*")
    RegistryChange.objects.all().delete()  # pruned: the log no longer reaches back
    third = selectors.registry()
    assert third is not second and sorted(r.name for r in third.rules()) == ["bulk", "one", "two"]
    assert first is not second
