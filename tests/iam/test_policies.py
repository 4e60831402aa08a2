"""The trust-policy generator: table tests for both modes and every mapping field."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from mappings import policies
from mappings.iam_eval import Request, allows
from tests.iam.conftest import ACCOUNT_ID, GITLAB, NOW, make_input, make_rule

HOST = "rolegate.example.com"
FEDERATED = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{HOST}"
ROLE = f":role:{ACCOUNT_ID}/deploy-web"  # every minted sub ends with the role it is for


def statements(result) -> list[dict]:
    assert isinstance(result, policies.TrustPolicy), getattr(result, "message", result)
    return result.document["Statement"]


def test_brokered_policy_trusts_rolegate_provider_with_minted_sub_and_aud():
    [statement] = statements(policies.generate(make_input([make_rule()])))
    assert statement == {
        "Effect": "Allow",
        "Principal": {"Federated": FEDERATED},
        "Action": ["sts:AssumeRoleWithWebIdentity", "sts:TagSession"],
        "Condition": {
            "StringEquals": {f"{HOST}:aud": "sts.amazonaws.com"},
            "StringLike": {f"{HOST}:sub": "gitlab-com:project_path:platform/web:ref_type:branch:ref:main" + ROLE},
        },
    }


@pytest.mark.parametrize(
    ("overrides", "equals", "like"),
    [
        ({"ref_type": "any"}, {}, {"sub": "gitlab-com:project_path:platform/web:ref_type:*:ref:main" + ROLE}),
        (
            {"ref_type": "tag", "ref": "v*"},
            {},
            {"sub": "gitlab-com:project_path:platform/web:ref_type:tag:ref:v*" + ROLE},
        ),
        ({"project": "platform/*"}, {}, {"sub": "gitlab-com:project_path:platform/*:ref_type:branch:ref:main" + ROLE}),
        ({"protected": True}, {"aws:RequestTag/ref_protected": "true"}, {}),
        ({"environment": "production"}, {}, {"aws:RequestTag/environment": "production"}),
        ({"environment": "review/*"}, {}, {"aws:RequestTag/environment": "review/*"}),
        # Tag values are the claims' exact values, so the pattern is written as it is.
        ({"environment": "prod eu/ü?"}, {}, {"aws:RequestTag/environment": "prod eu/ü?"}),
        ({"pipeline_sources": ("web",)}, {"aws:RequestTag/pipeline_source": "web"}, {}),
        ({"pipeline_sources": ("web", "push")}, {"aws:RequestTag/pipeline_source": ["push", "web"]}, {}),
    ],
)
def test_brokered_policy_condition_per_mapping_field(overrides, equals, like):
    [statement] = statements(policies.generate(make_input([make_rule(**overrides)])))
    condition = statement["Condition"]
    for key, value in equals.items():
        assert condition["StringEquals"][key] == value
    for key, value in like.items():
        full = f"{HOST}:sub" if key == "sub" else key
        assert condition["StringLike"][full] == value


def test_brokered_without_session_tags_does_not_allow_tag_session():
    result = policies.generate(make_input([make_rule()], session_tags=False))
    [statement] = statements(result)
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert result.warnings == ()


def test_brokered_without_session_tags_leaves_out_mappings_iam_could_not_check():
    """A token minted for another role with the same project and ref would pass a sub-only
    statement: such a mapping grants nothing (the matcher agrees) and is not in the policy."""
    rules = [make_rule("plain", project="platform/web"), make_rule("guarded", project="platform/api", protected=True)]
    result = policies.generate(make_input(rules, session_tags=False))
    text = json.dumps(statements(result))
    assert "platform/web" in text and "platform/api" not in text
    assert set(result.mapping_warnings) == {"guarded"}
    assert any("guarded grants nothing" in w for w in result.warnings)
    only_guarded = policies.generate(make_input([rules[1]], session_tags=False))
    assert only_guarded.document == policies.trusts_nobody()


def test_mappings_with_different_extra_conditions_get_separate_statements():
    rules = [
        make_rule("a", project="platform/a", protected=True),
        make_rule("b", project="platform/b", protected=True),
        make_rule("c", project="platform/c", environment="production"),
    ]
    found = statements(policies.generate(make_input(rules)))
    assert len(found) == 2
    protected = next(s for s in found if "aws:RequestTag/ref_protected" in s["Condition"].get("StringEquals", {}))
    assert protected["Condition"]["StringLike"][f"{HOST}:sub"] == [
        "gitlab-com:project_path:platform/a:ref_type:branch:ref:main" + ROLE,
        "gitlab-com:project_path:platform/b:ref_type:branch:ref:main" + ROLE,
    ]


def test_direct_mode_trusts_gitlab_provider_with_gitlab_sub_and_issuer_audiences():
    issuer = policies.IssuerInfo("gitlab-com", "https://gitlab.com", ("b-aud", "a-aud"))
    rule = make_rule(protected=True, environment="production", pipeline_sources=("push",), account_mode="direct")
    result = policies.generate(make_input([rule], mode="direct", issuers=[issuer]))
    [statement] = statements(result)
    assert statement == {
        "Effect": "Allow",
        "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/gitlab.com"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {
            "StringEquals": {"gitlab.com:aud": ["a-aud", "b-aud"]},
            "StringLike": {"gitlab.com:sub": "project_path:platform/web:ref_type:branch:ref:main"},
        },
    }
    warned = result.mapping_warnings["web-main"]
    for name in ("protected", "environment", "pipeline_sources"):
        assert any(f"'{name}' is not enforced" in w for w in warned)
    assert set(warned) <= set(result.warnings)


def test_direct_mode_one_statement_per_issuer():
    other = policies.IssuerInfo("gitlab-self", "https://git.example.com/gitlab", ("x",))
    rules = [make_rule("a"), make_rule("b", issuer="gitlab-self")]
    found = statements(policies.generate(make_input(rules, mode="direct", issuers=[GITLAB, other])))
    assert [s["Principal"]["Federated"].rsplit("/", 1)[-1] for s in found] == ["gitlab.com", "gitlab"]
    assert "git.example.com/gitlab:sub" in found[1]["Condition"]["StringLike"]


def test_direct_mode_without_unenforceable_conditions_has_no_warnings():
    result = policies.generate(make_input([make_rule()], mode="direct"))
    assert result.warnings == ()


@pytest.mark.parametrize(
    "rule",
    [
        make_rule(enabled=False),
        make_rule(expires_at=NOW - timedelta(seconds=1)),
        make_rule(expires_at=NOW),
    ],
    ids=["disabled", "expired", "expiring-now"],
)
def test_dead_mappings_contribute_nothing_and_the_role_trusts_nobody(rule):
    result = policies.generate(make_input([rule]))
    assert result.document == policies.trusts_nobody()
    request = Request("sts:AssumeRoleWithWebIdentity", FEDERATED, {})
    assert not allows(result.document, request)


def test_unexpired_mapping_counts():
    result = policies.generate(make_input([make_rule(expires_at=NOW + timedelta(seconds=1))]))
    assert result.document != policies.trusts_nobody()


def test_deterministic_sorted_and_deduplicated():
    rules = [make_rule("b", project="z/y"), make_rule("a", project="a/b"), make_rule("c", project="z/y")]
    one = policies.generate(make_input(rules))
    two = policies.generate(make_input(list(reversed(rules))))
    assert one.text == two.text
    [statement] = one.document["Statement"]
    subs = statement["Condition"]["StringLike"][f"{HOST}:sub"]
    assert subs == sorted(subs) and len(subs) == 2
    assert " " not in one.text and "\n" not in one.text


def test_subsumed_patterns_are_removed_within_and_across_statements():
    rules = [
        make_rule("all", project="platform/*", ref="*", ref_type="any"),
        make_rule("web", project="platform/web"),
        make_rule("web-prod", project="platform/web", environment="production"),
        make_rule("other", project="other/*", environment="production"),
    ]
    found = statements(policies.generate(make_input(rules)))
    text = json.dumps(found)
    assert "platform/web" not in text
    assert "gitlab-com:project_path:platform/*:ref_type:*:ref:*" + ROLE in text
    assert "other/*" in text


def test_compact_keeps_one_of_equivalent_patterns():
    assert policies.compact(["a*", "a*", "a?*", "ab"]) == ["a*"]


def test_size_is_measured_without_whitespace():
    result = policies.generate(make_input([make_rule()]))
    assert result.size == len(result.text) == policies.policy_size(json.loads(result.text))


def _sixty(project: str) -> list:
    return [make_rule(f"m{i:02d}", project=project.format(i=i), ref="main") for i in range(60)]


def test_sixty_mappings_compact_under_2048():
    rules = [*_sixty("platform/service-{i}"), make_rule("umbrella", project="platform/*", ref="main")]
    result = policies.generate(make_input(rules))
    assert isinstance(result, policies.TrustPolicy)
    assert result.size < 2048


def test_sixty_distinct_mappings_fail_cleanly_with_what_to_do():
    result = policies.generate(make_input(_sixty("group-{i}/service-with-a-longer-name")))
    assert isinstance(result, policies.PolicyTooLarge)
    assert result.size > 2048 and result.excess == result.size - 2048
    assert f"{result.excess} over" in result.message
    assert "4096" in result.message and "merge" in result.message


def test_a_raised_quota_lets_a_larger_policy_through():
    rules = [make_rule(f"m{i:02d}", project=f"g{i}/svc") for i in range(40)]
    small = policies.generate(make_input(rules, limit=2048))
    large = policies.generate(make_input(rules, limit=4096))
    assert isinstance(small, policies.PolicyTooLarge)
    assert isinstance(large, policies.TrustPolicy)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ({"Action": ["x"]}, {"Action": "x"}, True),
        ({"Action": ["b", "a"]}, {"Action": ["a", "b"]}, True),
        ({"A": 1, "B": 2}, {"B": 2, "A": 1}, True),
        ({"Action": ["a"]}, {"Action": ["a", "b"]}, False),
    ],
)
def test_normalised_comparison(a, b, same):
    assert policies.same_policy(a, b) is same
    assert (policies.policy_sha256(a) == policies.policy_sha256(b)) is same


def test_a_pattern_is_not_dropped_for_one_in_a_stricter_statement():
    rules = [
        make_rule("broad-protected", project="platform/*", protected=True),
        make_rule("narrow-any", project="platform/web"),
    ]
    text = json.dumps(statements(policies.generate(make_input(rules))))
    assert "project_path:platform/web:" in text and "project_path:platform/*:" in text


def test_a_pattern_is_not_dropped_for_one_restricted_to_some_pipeline_sources():
    """Found by the property test: 'any source' is not implied by 'push only'."""
    rules = [
        make_rule("a-protected", project="a", ref="a", protected=True),
        make_rule("any-push", project="?", ref="?", pipeline_sources=("push",)),
    ]
    text = json.dumps(statements(policies.generate(make_input(rules))))
    assert "project_path:a:ref_type:branch:ref:a" in text
    assert "project_path:?:ref_type:branch:ref:?" in text


def test_a_pattern_is_dropped_for_one_allowing_more_pipeline_sources():
    rules = [
        make_rule("web-push", project="platform/web", pipeline_sources=("push",)),
        make_rule("all-push-web", project="platform/*", pipeline_sources=("push", "web")),
    ]
    text = json.dumps(statements(policies.generate(make_input(rules))))
    assert "project_path:platform/web:" not in text
