"""Identity pins in the matcher (mappings.matching, docs/trust-model.md#identity-pins): a pinning
mapping refuses a token whose path is pinned to another GitLab id (``identity_changed``), and a
grant through it asks to pin what is not pinned yet. Pure: no database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mappings import lint, matching
from mappings.matching import NAMESPACE, PROJECT, Pin, Pins, Registry, decide
from tests.test_matching import DEPLOY_API, DEPLOY_WEB, NOW, rule

ISSUER = "gitlab-example"
PINNED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def pin(kind: str, path: str, gitlab_id: str, issuer: str = ISSUER) -> Pin:
    return Pin(issuer, kind, path, gitlab_id, pinned_at=PINNED_AT, pinned_by="first granted through mapping web-main")


def web(**overrides):
    return rule("web-main", pin_identity=True, **overrides)


def test_a_first_grant_through_a_pinning_mapping_asks_to_pin_the_project_and_the_namespace(web_main_claims):
    decision = decide(Registry([web()]), issuer=ISSUER, claims=web_main_claims, now=NOW)
    assert decision.granted
    assert {(p.kind, p.path, p.gitlab_id) for p in decision.new_pins} == {
        (PROJECT, "platform/web", "20"),
        (NAMESPACE, "platform", "72"),
    }
    assert all(
        p.issuer == ISSUER and p.pinned_by == "first granted through mapping web-main" for p in decision.new_pins
    )


def test_a_mapping_that_does_not_pin_records_nothing_and_ignores_pins(web_main_claims):
    registry = Registry([rule("web-main")], pins=[pin(PROJECT, "platform/web", "99")])
    decision = decide(registry, issuer=ISSUER, claims=web_main_claims, now=NOW)
    assert decision.granted and decision.new_pins == ()


def test_the_same_ids_are_granted_and_nothing_more_is_pinned(web_main_claims):
    pins = [pin(PROJECT, "platform/web", "20"), pin(NAMESPACE, "platform", "72")]
    decision = decide(Registry([web()], pins=pins), issuer=ISSUER, claims=web_main_claims, now=NOW)
    assert decision.granted and decision.new_pins == ()


def test_only_what_is_missing_is_pinned(web_main_claims):
    registry = Registry([web()], pins=[pin(NAMESPACE, "platform", "72")])
    decision = decide(registry, issuer=ISSUER, claims=web_main_claims, now=NOW)
    assert [(p.kind, p.path) for p in decision.new_pins] == [(PROJECT, "platform/web")]


@pytest.mark.parametrize("role_arn", [DEPLOY_WEB, None])
def test_another_project_id_at_a_pinned_path_is_refused_naming_both_ids_and_the_date(web_main_claims, role_arn):
    registry = Registry([web()], pins=[pin(PROJECT, "platform/web", "20")])
    claims = {**web_main_claims, "project_id": "99"}
    decision = decide(registry, issuer=ISSUER, claims=claims, now=NOW, role_arn=role_arn)
    assert not decision.granted
    assert decision.reason == matching.IDENTITY_CHANGED == "identity_changed"
    assert "project 'platform/web' is pinned to project_id 20 since 2026-01-02 03:04:05Z" in decision.detail
    assert "this token has project_id 99" in decision.detail
    assert "accept_identity_change" in decision.detail
    [evaluation] = decision.evaluations
    [failure] = evaluation.failed
    assert (failure.field, failure.pattern, failure.value, failure.why) == (
        "pinned_project_id",
        "20",
        "99",
        matching.ID_CHANGED,
    )
    assert decision.new_pins == ()


def test_another_namespace_id_is_refused_too(web_main_claims):
    registry = Registry([web()], pins=[pin(NAMESPACE, "platform", "72")])
    decision = decide(registry, issuer=ISSUER, claims={**web_main_claims, "namespace_id": "1000"}, now=NOW)
    assert decision.reason == matching.IDENTITY_CHANGED
    assert "namespace 'platform' is pinned to namespace_id 72" in decision.detail
    assert "this token has namespace_id 1000" in decision.detail


def test_a_token_without_namespace_id_is_not_compared_with_a_namespace_pin_nor_pins_one(web_main_claims):
    claims = {k: v for k, v in web_main_claims.items() if k != "namespace_id"}
    registry = Registry([web()], pins=[pin(NAMESPACE, "platform", "72")])
    assert decide(registry, issuer=ISSUER, claims=claims, now=NOW).granted
    fresh = decide(Registry([web()]), issuer=ISSUER, claims=claims, now=NOW)
    assert [p.kind for p in fresh.new_pins] == [PROJECT]


def test_a_token_without_project_id_fails_a_project_pin(web_main_claims):
    claims = {k: v for k, v in web_main_claims.items() if k != "project_id"}
    registry = Registry([web()], pins=[pin(PROJECT, "platform/web", "20")])
    decision = decide(registry, issuer=ISSUER, claims=claims, now=NOW)
    assert decision.reason == matching.IDENTITY_CHANGED
    assert "this token has no project_id" in decision.detail


def test_pins_of_another_issuer_do_not_apply(web_main_claims):
    registry = Registry([web()], pins=[pin(PROJECT, "platform/web", "99", issuer="other-gitlab")])
    assert decide(registry, issuer=ISSUER, claims=web_main_claims, now=NOW).granted


def test_a_mapping_whose_project_does_not_match_is_not_refused_for_identity(web_main_claims):
    pins = Pins([pin(PROJECT, "platform/web", "99")])
    evaluation = matching.evaluate(web(project="platform/w?x"), web_main_claims, NOW, pins)
    assert [f.field for f in evaluation.failed] == ["project"]


def test_other_failures_make_it_no_matching_mapping(web_main_claims):
    registry = Registry([web()], pins=[pin(PROJECT, "platform/web", "20")])
    claims = {**web_main_claims, "project_id": "99", "ref": "feature"}
    decision = decide(registry, issuer=ISSUER, claims=claims, now=NOW)
    assert decision.reason == matching.NO_MATCHING_MAPPING
    assert [f.field for f in decision.evaluations[0].failed] == ["pinned_project_id", "ref"]


def test_a_mapping_that_does_not_pin_still_grants_its_role(web_main_claims):
    """The pin is a condition of the pinning mapping: another mapping of the same role without it
    grants on its own (lint's ``redundant`` names the pinning one, whose pin it defeats)."""
    registry = Registry([web(), rule("web-unpinned")], pins=[pin(PROJECT, "platform/web", "20")])
    decision = decide(registry, issuer=ISSUER, claims={**web_main_claims, "project_id": "99"}, now=NOW)
    assert decision.granted and decision.rule.name == "web-unpinned"
    assert decision.new_pins == ()  # no pin conflicts... nor is the new id pinned: the path is pinned already
    warnings = lint.lint([web(), rule("web-unpinned")], NOW)
    assert [(w.mapping, w.code) for w in warnings] == [("web-main", lint.REDUNDANT)]


def test_a_grant_through_any_pinning_mapping_of_the_role_records_the_pins(web_main_claims):
    registry = Registry([rule("a-unpinned"), web()])
    decision = decide(registry, issuer=ISSUER, claims=web_main_claims, now=NOW)
    assert decision.rule.name == "a-unpinned"
    assert {p.kind for p in decision.new_pins} == {PROJECT, NAMESPACE}
    assert all(p.pinned_by.endswith("web-main") for p in decision.new_pins)


def test_a_pinning_mapping_of_another_role_records_nothing(web_main_claims):
    registry = Registry([rule("web-main"), rule("api", role_arn=DEPLOY_API, pin_identity=True)])
    decision = decide(registry, issuer=ISSUER, claims=web_main_claims, now=NOW, role_arn=DEPLOY_WEB)
    assert decision.granted and decision.new_pins == ()


def test_lint_a_pinning_mapping_never_covers_one_that_does_not_pin():
    assert not lint.covers(web(), rule("web-unpinned"))
    assert lint.covers(rule("web-unpinned"), web())


def test_pins_patch_like_a_rebuild():
    first, second = pin(PROJECT, "a", "1"), pin(NAMESPACE, "g", "2")
    pins = Pins([first]).changed(put=[second, replace(first, gitlab_id="3")], drop=[])
    assert sorted((p.kind, p.path, p.gitlab_id) for p in pins) == [(NAMESPACE, "g", "2"), (PROJECT, "a", "3")]
    assert len(pins.changed(drop=[first.key])) == 1
    registry = Registry([web()], pins=[first])
    assert registry.patched(version=2, pins=pins).pins is pins
    assert registry.patched(version=2).pins is registry.pins


_ids = st.sampled_from(["1", "2", "20", "72"])


@given(
    pins=st.lists(
        st.builds(pin, st.sampled_from([PROJECT, NAMESPACE]), st.sampled_from(["platform/web", "platform"]), _ids),
        unique_by=lambda p: p.key,
    ),
    project_id=_ids,
    namespace_id=st.none() | _ids,
    pinning=st.booleans(),
)
def test_a_pinning_mapping_grants_only_ids_that_equal_every_pin_on_the_tokens_paths(
    pins, project_id, namespace_id, pinning
):
    """Whatever is pinned: a grant through a pinning mapping means every pin on the token's paths
    holds the token's id (a namespace pin only when the token has one), and what it asks to pin is
    exactly the paths not pinned yet; a refusal is identity_changed and names a differing pin."""
    claims = {
        "project_path": "platform/web",
        "namespace_path": "platform",
        "project_id": project_id,
        "ref": "main",
        "ref_type": "branch",
        "ref_protected": "true",
    }
    if namespace_id is not None:
        claims["namespace_id"] = namespace_id
    registry = Registry([rule("web-main", pin_identity=pinning)], pins=pins)
    decision = decide(registry, issuer=ISSUER, claims=claims, now=NOW)
    token_ids = {PROJECT: project_id, NAMESPACE: namespace_id}
    paths = {PROJECT: "platform/web", NAMESPACE: "platform"}
    differing = [
        p
        for p in pins
        if token_ids[p.kind] is not None and p.path == paths[p.kind] and p.gitlab_id != token_ids[p.kind]
    ]
    if not pinning:
        assert decision.granted and decision.new_pins == ()
        return
    assert decision.granted == (not differing)
    if decision.granted:
        pinned = {(p.kind, p.path) for p in pins}
        assert {(p.kind, p.path, p.gitlab_id) for p in decision.new_pins} == {
            (kind, paths[kind], token_ids[kind])
            for kind in (PROJECT, NAMESPACE)
            if token_ids[kind] is not None and (kind, paths[kind]) not in pinned
        }
    else:
        assert decision.reason == matching.IDENTITY_CHANGED
        assert all(f"pinned to {p.kind}_id {p.gitlab_id}" in decision.detail for p in differing)
