"""The matcher (mappings.matching) on the registry personas."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mappings import matching
from mappings.matching import Registry, Rule, decide
from tests.properties import property_examples
from tests.rules import changed, flat_rule

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DEPLOY_WEB = "arn:aws:iam::123456789012:role/deploy-web"
DEPLOY_API = "arn:aws:iam::123456789012:role/deploy-api"
READONLY = "arn:aws:iam::210987654321:role/readonly"


def rule(name, role_arn=DEPLOY_WEB, **overrides) -> Rule:
    fields = dict(
        id=hash(name) & 0xFFFF,
        name=name,
        issuer="gitlab-example",
        role_arn=role_arn,
        role_name=role_arn.rsplit("/", 1)[1],
        account_name="prod",
        account_id=role_arn.split(":")[4],
        account_mode="brokered",
        account_audience="sts.amazonaws.com",
        max_session_seconds=3600,
        session_tags=True,
        project="platform/web",
        ref="main",
        ref_type="branch",
        protected=True,
        environment=None,
        pipeline_sources=(),
        expires_at=None,
        enabled=True,
    )
    fields.update(overrides)
    return flat_rule(**fields)


def test_grants_the_web_teams_main_branch_job(web_main_claims):
    registry = Registry([rule("web-main")])
    decision = decide(registry, issuer="gitlab-example", claims=web_main_claims, now=NOW)
    assert decision.granted
    assert decision.rule.name == "web-main"
    assert decision.role_arn == DEPLOY_WEB
    assert (
        decision.sub == "gitlab-example:project_path:platform/web:ref_type:branch:ref:main:role:123456789012/deploy-web"
    )


def test_feature_branch_merge_request_is_refused_with_every_failing_condition(feature_mr_claims):
    registry = Registry([rule("web-main", pipeline_sources=("push", "web"))])
    decision = decide(registry, issuer="gitlab-example", claims=feature_mr_claims, now=NOW)
    assert not decision.granted
    assert decision.reason == matching.NO_MATCHING_MAPPING
    [evaluation] = decision.evaluations
    assert [f.field for f in evaluation.failed] == ["ref", "protected", "pipeline_sources"]
    assert evaluation.failed[0].value == "feature/login"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"enabled": False}, "enabled"),
        ({"expires_at": NOW - timedelta(seconds=1)}, "expires_at"),
        ({"project": "platform/web?"}, "project"),
        ({"ref_type": "tag"}, "ref_type"),
        ({"environment": "production"}, "environment"),  # the job has no environment
        ({"pipeline_sources": ("schedule",)}, "pipeline_sources"),
    ],
)
def test_each_condition_can_refuse(web_main_claims, overrides, field):
    registry = Registry([rule("m", **overrides)])
    decision = decide(registry, issuer="gitlab-example", claims=web_main_claims, now=NOW)
    assert not decision.granted
    assert [f.field for f in decision.evaluations[0].failed] == [field]


def test_unexpired_mapping_still_grants(web_main_claims):
    registry = Registry([rule("m", expires_at=NOW + timedelta(seconds=1))])
    assert decide(registry, issuer="gitlab-example", claims=web_main_claims, now=NOW).granted


def test_other_issuer_never_matches(web_main_claims):
    registry = Registry([rule("m", issuer="gitlab-com")])
    decision = decide(registry, issuer="gitlab-example", claims=web_main_claims, now=NOW)
    assert not decision.granted
    assert decision.evaluations == ()


def test_environment_pattern(api_production_claims):
    registry = Registry([rule("api-prod", role_arn=DEPLOY_API, project="platform/*", environment="prod*")])
    assert decide(registry, issuer="gitlab-example", claims=api_production_claims, now=NOW).granted


def test_several_roles_without_audience_is_ambiguous_and_audience_picks_one(web_main_claims):
    registry = Registry([rule("web-main"), rule("web-readonly", role_arn=READONLY, project="platform/*")])
    ambiguous = decide(registry, issuer="gitlab-example", claims=web_main_claims, now=NOW)
    assert not ambiguous.granted
    assert ambiguous.reason == matching.AMBIGUOUS_ROLE
    picked = decide(registry, issuer="gitlab-example", claims=web_main_claims, now=NOW, role_arn=READONLY)
    assert picked.granted
    assert picked.rule.name == "web-readonly"


def test_requested_role_without_matching_mapping_is_refused(web_main_claims):
    registry = Registry([rule("web-main")])
    decision = decide(registry, issuer="gitlab-example", claims=web_main_claims, now=NOW, role_arn=READONLY)
    assert not decision.granted
    assert READONLY in decision.detail


def test_direct_mode_account_is_never_brokered(web_main_claims):
    registry = Registry([rule("web-main", account_mode="direct")])
    decision = decide(registry, issuer="gitlab-example", claims=web_main_claims, now=NOW)
    assert not decision.granted
    assert decision.reason == matching.DIRECT_MODE_ACCOUNT


def test_wrongly_typed_claims_never_match(web_main_claims):
    web_main_claims["ref_protected"] = True  # GitLab sends the string "true"
    registry = Registry([rule("web-main")])
    assert not decide(registry, issuer="gitlab-example", claims=web_main_claims, now=NOW).granted


def test_index_finds_rules_by_literal_prefix_only():
    rules = [rule(f"m{i}", project=f"group{i}/*") for i in range(1000)] + [rule("all", project="*")]
    registry = Registry(rules)
    found = {r.name for r in registry.candidates("gitlab-example", "group7/app")}
    assert found == {"m7", "all"}


def test_a_conditioned_mapping_of_a_brokered_role_without_session_tags_grants_nothing(web_main_claims):
    """IAM could check its condition only through session tags: the role's trust policy would
    hold only the project and ref."""
    registry = Registry([rule("web-main", session_tags=False, protected=True)])
    decision = decide(registry, issuer="gitlab-example", claims=web_main_claims, now=NOW)
    assert not decision.granted
    assert [f.field for f in decision.evaluations[0].failed] == ["session_tags"]
    plain = Registry([rule("web-main", session_tags=False, protected=False)])
    assert decide(plain, issuer="gitlab-example", claims=web_main_claims, now=NOW).granted


def test_a_claim_no_session_tag_can_carry_is_refused_where_iam_checks_it_by_tag(api_production_claims):
    """The token would carry no environment tag, so IAM would refuse it: refused with its own
    reason, naming the mapping and the value, rather than minted."""
    registry = Registry([rule("api-prod", role_arn=DEPLOY_API, project="platform/*", environment="prod*")])
    claims = {**api_production_claims, "environment": "prod{eu"}
    for role_arn in (None, DEPLOY_API):
        decision = decide(registry, issuer="gitlab-example", claims=claims, now=NOW, role_arn=role_arn)
        assert not decision.granted
        assert decision.reason == matching.CLAIM_NOT_TAGGABLE
        assert "'api-prod'" in decision.detail and "'prod{eu'" in decision.detail
        [failure] = decision.evaluations[0].failed
        assert (failure.field, failure.why) == ("environment", matching.NOT_TAGGABLE)
    # Another mapping of the role that does not condition on it still grants (the token then has no
    # environment tag, and that mapping's statement needs none).
    plain = rule("api-any", role_arn=DEPLOY_API, project="platform/*")
    both = Registry([rule("api-prod", role_arn=DEPLOY_API, project="platform/*", environment="prod*"), plain])
    assert decide(both, issuer="gitlab-example", claims=claims, now=NOW).rule == plain


@pytest.mark.parametrize("environment", ["prod\teu", "prod\x85", "p" * 257])
def test_every_untaggable_environment_is_refused_by_tag_checking_mappings(api_production_claims, environment):
    registry = Registry([rule("api-prod", role_arn=DEPLOY_API, project="platform/*", environment="p*")])
    claims = {**api_production_claims, "environment": environment}
    assert decide(registry, issuer="gitlab-example", claims=claims, now=NOW).reason == matching.CLAIM_NOT_TAGGABLE


def test_a_mismatch_is_no_matching_mapping_even_when_the_value_is_untaggable(api_production_claims):
    registry = Registry([rule("api-prod", role_arn=DEPLOY_API, project="platform/*", environment="staging")])
    claims = {**api_production_claims, "environment": "prod{eu"}
    decision = decide(registry, issuer="gitlab-example", claims=claims, now=NOW)
    assert decision.reason == matching.NO_MATCHING_MAPPING
    assert [f.why for f in decision.evaluations[0].failed] == [matching.MISMATCH]


def test_direct_mode_has_no_tag_checks(api_production_claims):
    registry = Registry([rule("api-prod", role_arn=DEPLOY_API, project="platform/*", environment="prod*{")])
    claims = {**api_production_claims, "environment": "prod{eu{"}
    direct = Registry([changed(r, account_mode="direct") for r in registry.rules_for_role(DEPLOY_API)])
    decision = decide(direct, issuer="gitlab-example", claims=claims, now=NOW)
    assert decision.reason == matching.DIRECT_MODE_ACCOUNT
    assert decision.evaluations[0].matched


def test_an_environment_pattern_no_tag_can_hold_grants_nothing_on_a_role_with_tags(api_production_claims):
    """A row written before such patterns were refused: IAM cannot compare it as written (the
    generator leaves it out), so the matcher fails it too and explain and the exchange agree."""
    registry = Registry([rule("api-prod", role_arn=DEPLOY_API, project="platform/*", environment="prod{eu}")])
    for environment in ("prod{eu}", "prod_eu_"):
        claims = {**api_production_claims, "environment": environment}
        decision = decide(registry, issuer="gitlab-example", claims=claims, now=NOW)
        assert not decision.granted
        whys = [f.why for f in decision.evaluations[0].failed]
        assert matching.PATTERN_NOT_TAGGABLE in whys
        assert decision.reason == matching.NO_MATCHING_MAPPING
    [failure] = [f for f in decision.evaluations[0].failed if f.why == matching.PATTERN_NOT_TAGGABLE]
    assert "'{}'" in failure.sentence() and "grants nothing" in failure.sentence()


def test_the_role_in_the_sub_counts_towards_its_255_characters(web_main_claims):
    """Fits without the role suffix, not with it."""
    suffix = len(":role:123456789012/deploy-web")
    base = len("gitlab-example:project_path:platform/web:ref_type:branch:ref:")
    claims = {**web_main_claims, "ref": "r" * (255 - base - suffix + 1)}
    registry = Registry([rule("web-main", ref="r*")])
    decision = decide(registry, issuer="gitlab-example", claims=claims, now=NOW)
    assert decision.reason == matching.SUB_TOO_LONG
    assert "256 characters" in decision.detail and "role name" in decision.detail
    claims["ref"] = claims["ref"][:-1]
    decision = decide(registry, issuer="gitlab-example", claims=claims, now=NOW)
    assert decision.granted and len(decision.sub) == 255


# --- the exchange's decision evaluates only the requested role's mappings ----------------------

ROLES = (DEPLOY_WEB, DEPLOY_API, READONLY)
some_rules = st.lists(
    st.builds(
        lambda i, role, project, ref, protected, direct, tags, pin, enabled: rule(
            f"m{i:02d}",
            role_arn=role,
            id=i,
            project=project,
            ref=ref,
            protected=protected,
            account_mode="direct" if direct else "brokered",
            session_tags=tags,
            pin_identity=pin,
            enabled=enabled,
        ),
        st.integers(0, 60),
        st.sampled_from(ROLES),
        st.sampled_from(["platform/web", "platform/*", "platform/w*", "*", "other/*"]),
        st.sampled_from(["main", "release/*", "*"]),
        st.booleans(),  # protected
        st.sampled_from([False, False, False, True]),  # a direct-mode account
        st.booleans(),  # session tags
        st.booleans(),  # pins identities
        st.sampled_from([True, True, True, False]),  # enabled
    ),
    unique_by=lambda r: r.id,
    min_size=1,
    max_size=10,
)


@settings(max_examples=property_examples(), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rules=some_rules,
    role_arn=st.sampled_from(ROLES),
    project=st.sampled_from(["platform/web", "platform/web", "platform/api", "other/x"]),
    ref=st.sampled_from(["main", "main", "release/1", "feature"]),
    protected=st.sampled_from(["true", "true", "false"]),
)
def test_the_exchanges_decision_is_the_explained_one(web_main_claims, rules, role_arn, project, ref, protected):
    """decide(explain=False) -- only the requested role's candidates -- grants or refuses exactly as
    the full evaluation does, for the same reason, rule, sub, sentence and pins to record."""
    claims = {**web_main_claims, "project_path": project, "ref": ref, "ref_protected": protected}
    registry = Registry(rules)
    full = decide(registry, issuer="gitlab-example", claims=claims, now=NOW, role_arn=role_arn)
    narrow = decide(registry, issuer="gitlab-example", claims=claims, now=NOW, role_arn=role_arn, explain=False)
    event(full.reason)  # --hypothesis-show-statistics: how often each outcome was drawn
    assert (narrow.granted, narrow.reason, narrow.detail, narrow.rule, narrow.sub, narrow.new_pins) == (
        full.granted,
        full.reason,
        full.detail,
        full.rule,
        full.sub,
        full.new_pins,
    )
    assert narrow.evaluations == tuple(e for e in full.evaluations if e.rule.role_arn == role_arn)
