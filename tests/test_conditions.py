"""The pipeline-definition, environment and runner conditions (ci_config_ref_uri,
environment_protected, deployment_tiers, runner_environment) and the source identity: the
matcher's table, the generated trust policy with and without session tags (judged by the IAM
evaluator on the token Rolegate would mint), and the minted source identity."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mappings import iam_eval, lint, matching, minted, policies
from mappings.matching import Registry, decide
from tests.exchange.gitlab_stand_in import with_claims
from tests.iam.conftest import ACCOUNT_ID, NOW, ROLEGATE, make_input, make_rule

CI_CONFIG = "gitlab.example.com/platform/api//.gitlab-ci.yml@refs/heads/main"


@pytest.fixture
def deploy_claims(api_production_claims) -> dict:
    """The API team's production deploy job: protected production-tier environment, self-hosted
    runner, the project's own .gitlab-ci.yml on main."""
    claims = dict(api_production_claims)
    assert (claims["ci_config_ref_uri"], claims["environment_protected"]) == (CI_CONFIG, "true")
    assert (claims["deployment_tier"], claims["runner_environment"]) == ("production", "self-hosted")
    return claims


def conditioned(**overrides):
    fields = dict(
        project="platform/api",
        ref="*",
        ci_config_ref_uri="gitlab.example.com/platform/api//.gitlab-ci.yml@refs/heads/*",
        environment_protected=True,
        deployment_tiers=("production", "staging"),
        runner_environment="self-hosted",
    )
    fields.update(overrides)
    return make_rule("api-deploy", **fields)


# --- the matcher ---------------------------------------------------------------------------------

TABLE = [
    # (rule overrides, claim overrides, failed fields)
    ({}, {}, []),
    ({}, {"ci_config_ref_uri": "gitlab.example.com/mallory/ci//.gitlab-ci.yml@refs/heads/main"}, ["ci_config_ref_uri"]),
    ({}, {"ci_config_ref_uri": None}, ["ci_config_ref_uri"]),
    ({"ci_config_ref_uri": "*"}, {"ci_config_ref_uri": None}, ["ci_config_ref_uri"]),  # absent never matches
    ({"ci_config_ref_uri": None}, {"ci_config_ref_uri": "anything/at//all.yml@x"}, []),
    ({}, {"environment_protected": "false"}, ["environment_protected"]),
    ({}, {"environment_protected": None}, ["environment_protected"]),
    ({"environment_protected": False}, {"environment_protected": "false"}, []),
    ({}, {"deployment_tier": "staging"}, []),
    ({}, {"deployment_tier": "development"}, ["deployment_tiers"]),
    ({}, {"deployment_tier": "Production"}, ["deployment_tiers"]),  # exact, case-sensitive
    ({}, {"deployment_tier": None}, ["deployment_tiers"]),
    ({"deployment_tiers": ()}, {"deployment_tier": None}, []),
    ({}, {"runner_environment": "gitlab-hosted"}, ["runner_environment"]),
    ({}, {"runner_environment": None}, ["runner_environment"]),
    ({"runner_environment": "gitlab-hosted"}, {"runner_environment": "gitlab-hosted"}, []),
    (
        {},
        {"runner_environment": "gitlab-hosted", "deployment_tier": "other", "environment_protected": "false"},
        ["environment_protected", "deployment_tiers", "runner_environment"],
    ),
]


@pytest.mark.parametrize(("rule_overrides", "claim_overrides", "failed"), TABLE)
def test_matcher_table(deploy_claims, rule_overrides, claim_overrides, failed):
    rule = conditioned(**rule_overrides)
    evaluation = matching.evaluate(rule, with_claims(deploy_claims, claim_overrides), NOW)
    assert [f.field for f in evaluation.failed] == failed
    decision = decide(
        Registry([rule]), issuer="gitlab-com", claims=with_claims(deploy_claims, claim_overrides), now=NOW
    )
    assert decision.granted is (not failed)


def test_a_failure_names_the_condition_and_the_value(deploy_claims):
    evaluation = matching.evaluate(conditioned(), with_claims(deploy_claims, {"deployment_tier": "testing"}), NOW)
    [failure] = evaluation.failed
    assert (failure.field, failure.pattern, failure.value) == ("deployment_tiers", "production,staging", "testing")
    assert failure.sentence() == "deployment_tiers 'production,staging' does not match 'testing'"


def test_a_pipeline_definition_no_tag_can_carry_is_refused_not_rewritten(deploy_claims):
    claims = with_claims(deploy_claims, {"ci_config_ref_uri": CI_CONFIG.replace("main", "ma{in")})
    decision = decide(Registry([conditioned()]), issuer="gitlab-com", claims=claims, now=NOW)
    assert decision.reason == matching.CLAIM_NOT_TAGGABLE
    assert "ci_config_ref_uri" in decision.detail
    # Without session tags Rolegate alone checks it, so nothing has to carry it (direct mode).
    direct = conditioned(account_mode="direct")
    assert matching.evaluate(direct, claims, NOW).matched


def test_without_session_tags_a_brokered_mapping_with_a_new_condition_grants_nothing(deploy_claims):
    for overrides in (
        {"ci_config_ref_uri": "*"},
        {"environment_protected": True},
        {"deployment_tiers": ("production",)},
        {"runner_environment": "self-hosted"},
    ):
        rule = make_rule("plain", project="platform/api", ref="*", session_tags=False, **overrides)
        assert matching.unenforceable(rule)
        assert [f.field for f in matching.evaluate(rule, deploy_claims, NOW).failed] == ["session_tags"]
        [warning] = policies.unchecked_conditions(rule, mode="brokered", session_tags=False)
        assert "grants nothing" in warning and next(iter(overrides)) in warning


# --- the generated trust policy, judged by the evaluator -------------------------------------------


def admitted(policy: dict, rule, claims: dict, *, source_identity: bool = False) -> bool:
    return iam_eval.minted_token_allowed(
        policy,
        rolegate_issuer=ROLEGATE,
        account_id=ACCOUNT_ID,
        audience="sts.amazonaws.com",
        issuer_name="gitlab-com",
        claims=claims,
        mapping_name=rule.name,
        session_tags=rule.session_tags,
        role_name=rule.role_name,
        source_identity=source_identity,
    )


def test_with_session_tags_iam_checks_each_new_condition(deploy_claims):
    rule = conditioned()
    result = policies.generate(make_input([rule]))
    assert result.fits and result.warnings == ()
    [statement] = result.document["Statement"]
    assert statement["Condition"]["StringEquals"]["aws:RequestTag/environment_protected"] == "true"
    assert statement["Condition"]["StringEquals"]["aws:RequestTag/deployment_tier"] == ["production", "staging"]
    assert statement["Condition"]["StringEquals"]["aws:RequestTag/runner_environment"] == "self-hosted"
    assert statement["Condition"]["StringLike"]["aws:RequestTag/ci_config_ref_uri"] == rule.ci_config_ref_uri
    assert admitted(result.document, rule, deploy_claims)
    # What the matcher refuses, IAM refuses too, condition by condition (the tokens Rolegate would
    # never mint, presented anyway: the two layers agree).
    for rule_overrides, claim_overrides, failed in TABLE:
        row_rule = conditioned(**rule_overrides)
        document = policies.generate(make_input([row_rule])).document
        claims = with_claims(deploy_claims, claim_overrides)
        assert admitted(document, row_rule, claims) is (not failed), (rule_overrides, claim_overrides)


def test_statements_group_by_all_conditions_and_weaker_ones_absorb(deploy_claims):
    strict = conditioned()
    loose = replace(conditioned(), name="api-any-runner", runner_environment=None)
    result = policies.generate(make_input([strict, loose]))
    # The strict sub is covered by the looser statement, so only that statement remains.
    [statement] = result.document["Statement"]
    assert "aws:RequestTag/runner_environment" not in statement["Condition"]["StringEquals"]
    assert admitted(result.document, loose, with_claims(deploy_claims, {"runner_environment": "gitlab-hosted"}))
    # Two different runner requirements stay two statements.
    hosted = replace(conditioned(), name="api-hosted", project="platform/web", runner_environment="gitlab-hosted")
    result = policies.generate(make_input([strict, hosted]))
    assert len(result.document["Statement"]) == 2


def test_without_session_tags_the_conditions_are_listed_as_unchecked_in_direct_mode(deploy_claims):
    rule = conditioned(account_mode="direct")
    result = policies.generate(make_input([rule], mode="direct"))
    assert set(result.warnings) >= {
        "mapping api-deploy: 'ci_config_ref_uri' is not enforced by IAM "
        "(GitLab's token carries no session tags IAM could check)",
        "mapping api-deploy: 'environment_protected' is not enforced by IAM "
        "(GitLab's token carries no session tags IAM could check)",
        "mapping api-deploy: 'deployment_tiers' is not enforced by IAM "
        "(GitLab's token carries no session tags IAM could check)",
        "mapping api-deploy: 'runner_environment' is not enforced by IAM "
        "(GitLab's token carries no session tags IAM could check)",
    }
    assert iam_eval.gitlab_token_allowed(
        result.document,
        issuer_url="https://gitlab.com",
        account_id=ACCOUNT_ID,
        aud="https://rolegate.example.com",
        claims=with_claims(deploy_claims, {"runner_environment": "gitlab-hosted"}),
    )  # IAM lets it in: only explain and the warnings say otherwise


def test_brokered_role_without_tags_leaves_the_mapping_out(deploy_claims):
    rule = conditioned(session_tags=False)
    result = policies.generate(make_input([rule], session_tags=False))
    assert result.document == policies.trusts_nobody()
    assert not admitted(result.document, rule, deploy_claims)


def test_lint_does_not_call_a_conditioned_mapping_covered_by_a_looser_one_the_other_way():
    strict = conditioned()
    loose = replace(conditioned(), name="api-loose", ci_config_ref_uri=None, runner_environment=None)
    assert lint.covers(loose, strict)
    assert not lint.covers(strict, loose)
    narrower_uri = replace(strict, name="api-narrow", ci_config_ref_uri=CI_CONFIG)
    assert lint.covers(strict, narrower_uri) and not lint.covers(narrower_uri, strict)


def test_session_tags_stay_within_stss_limit(deploy_claims):
    tags = minted.principal_tags(deploy_claims, "api-deploy")
    assert len(minted.PRINCIPAL_TAG_KEYS) <= 50  # STS: at most 50 session tags
    assert tags["ci_config_ref_uri"] == [CI_CONFIG]
    assert tags["environment_protected"] == ["true"]
    assert tags["deployment_tier"] == ["production"]
    assert tags["runner_environment"] == ["self-hosted"]


# --- source identity -----------------------------------------------------------------------------


def test_source_identity_is_the_job():
    assert minted.source_identity({"project_id": "21", "job_id": "331"}) == "gl-21-331"
    # Never a rewritten stand-in: ids that do not make a valid source identity give none.
    assert minted.source_identity({"project_id": "2 1", "job_id": "331"}) is None
    assert minted.source_identity({"project_id": "21", "job_id": "9" * 70}) is None
    assert minted.source_identity({"project_id": "21", "job_id": "33é"}) is None
    assert minted.source_identity({"project_id": 21, "job_id": "331"}) is None


def test_source_identity_needs_sts_set_source_identity_in_the_trust_policy(deploy_claims):
    rule = conditioned()
    without = policies.generate(make_input([rule])).document
    assert admitted(without, rule, deploy_claims)
    assert not admitted(without, rule, deploy_claims, source_identity=True)
    data = replace(make_input([rule]), source_identity=True)
    opted_in = policies.generate(data).document
    [statement] = opted_in["Statement"]
    assert statement["Action"] == [policies.ASSUME_ACTION, policies.TAG_ACTION, policies.SOURCE_IDENTITY_ACTION]
    assert admitted(opted_in, rule, deploy_claims, source_identity=True)
    # Also without session tags.
    untagged = make_rule("web", session_tags=False)
    document = policies.generate(replace(make_input([untagged], session_tags=False), source_identity=True)).document
    assert document["Statement"][0]["Action"] == [policies.ASSUME_ACTION, policies.SOURCE_IDENTITY_ACTION]
    assert admitted(
        document, untagged, {**deploy_claims, "project_path": "platform/web", "ref": "main"}, source_identity=True
    )
