"""Incremental registry refresh: a patched snapshot is the snapshot a full rebuild would make.

``Registry.patched`` (pure) for any rules and any change; ``selectors.registry()`` for every kind
of registry write through the services, reading only the change log and the rows it reaches."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mappings import pins, selectors, services
from mappings.matching import PROJECT, Pin, RegisteredIssuer, Registry, Rule
from mappings.models import Mapping, RegistryChange
from tests.factories import AccountFactory, IssuerFactory, RoleFactory


def same(a: Registry, b: Registry) -> None:
    assert a.version == b.version
    assert a.size == b.size
    assert {i: dict(shards.items()) for i, shards in a._index.items()} == {
        i: dict(shards.items()) for i, shards in b._index.items()
    }
    assert a._prefix_lengths == b._prefix_lengths
    assert dict(a._by_id.items()) == dict(b._by_id.items())
    arns = {rule.role_arn for rule in [*a.rules(), *b.rules()]}
    assert {arn: a.rules_for_role(arn) for arn in arns} == {arn: b.rules_for_role(arn) for arn in arns}
    assert a.issuers_by_url == b.issuers_by_url
    assert {pin.key: pin for pin in a.pins} == {pin.key: pin for pin in b.pins}


def make_rule(
    pk: int, issuer: str, project: str, role: str, project_id: str | None = None, namespace_id: str | None = None
) -> Rule:
    return Rule(
        id=pk,
        name=f"m{pk:03d}",
        issuer=issuer,
        role_arn=f"arn:aws:iam::123456789012:role/{role}",
        role_name=role,
        account_name="prod",
        account_id="123456789012",
        account_mode="brokered",
        account_audience="sts.amazonaws.com",
        max_session_seconds=3600,
        session_tags=True,
        project=project,
        ref="main",
        ref_type="branch",
        protected=False,
        environment=None,
        pipeline_sources=(),
        expires_at=None,
        enabled=True,
        project_id=project_id,
        namespace_id=namespace_id,
    )


rules = st.builds(
    make_rule,
    st.integers(1, 40),
    st.sampled_from(["a", "b"]),
    st.sampled_from(["g/web", "g/*", "g/api", "h/*", "*", "g/w*"]),
    st.sampled_from(["r1", "r2", "r3"]),
    # Mappings bound on ids: with project '*' they are indexed by id, not by path.
    st.sampled_from([None, None, "20", "21"]),
    st.sampled_from([None, None, "72"]),
)


@given(
    before=st.lists(rules, unique_by=lambda r: r.id, max_size=25),
    removed=st.sets(st.integers(1, 45), max_size=10),
    added=st.lists(rules, unique_by=lambda r: r.id, max_size=10),
    new_issuers=st.booleans(),
)
def test_a_patched_registry_equals_a_rebuilt_one(before, removed, added, new_issuers):
    issuers = [RegisteredIssuer(name="a", url="https://a", audiences=("x",), jwks_url=None)]
    if new_issuers:
        issuers.append(RegisteredIssuer(name="b", url="https://b", audiences=("y",), jwks_url=None))
    old = Registry(before, version=1, issuers=issuers[:1])
    patched = old.patched(version=2, removed=removed, rules=added, issuers=issuers if new_issuers else None)
    replaced = {r.id for r in added}
    expected = [r for r in before if r.id not in removed and r.id not in replaced] + list(added)
    same(patched, Registry(expected, version=2, issuers=issuers if new_issuers else issuers[:1]))
    same(old, Registry(before, version=1, issuers=issuers[:1]))  # the old snapshot is untouched


def ids_of(name: str, expected: tuple[str | None, str | None]) -> None:
    """The patched snapshot carries the mapping's ids (the new fields flow through the patch)."""
    [rule] = [rule for rule in selectors.registry().rules() if rule.name == name]
    assert (rule.project_id, rule.namespace_id) == expected
    found = selectors.registry().candidates(rule.issuer, "any/path", *expected)
    assert [r.name for r in found] == [name]


@pytest.mark.django_db
def test_every_kind_of_registry_write_is_patched_in(monkeypatch):
    issuer, other_issuer = IssuerFactory(), IssuerFactory()
    account = AccountFactory()
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
        lambda: services.registry_delete(gone, actor="t"),
        lambda: services.registry_update(web, actor="t", name="deploy-site"),
        lambda: services.registry_update(account, actor="t", name="renamed"),
        lambda: pins.pins_record(
            [Pin(other_issuer.name, PROJECT, "tools/x", "5"), Pin(issuer.name, PROJECT, "a", "1")]
        ),
        lambda: pins.identity_change_accept(
            issuer=other_issuer.name, kind=PROJECT, path="tools/x", new_id="6", actor="t", note="moved"
        ),
        lambda: services.registry_update(other_issuer, actor="t", name="renamed-issuer"),
        lambda: services.registry_delete(api, actor="t"),
    ]
    for step in steps:
        step()
        version, stamp = selectors._registry_stamp()
        same(selectors.registry(), build(version, stamp).registry)
    assert sorted(rule.name for rule in selectors.registry().rules()) == ["new"]
    assert selectors.registry().issuer_named("renamed-issuer") is not None
    assert selectors.registry().pins.get("renamed-issuer", PROJECT, "tools/x").gitlab_id == "6"


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
