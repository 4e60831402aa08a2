"""The IAM evaluator (table tests), and the property that generated policies let in exactly the
minted tokens the matcher grants."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappings import iam_eval, policies
from mappings.iam_eval import Request, UnsupportedPolicy, allows
from mappings.matching import evaluate
from tests.iam.conftest import ACCOUNT_ID, GITLAB, NOW, ROLEGATE, make_input, make_rule
from tests.properties import property_examples
from tests.rules import changed

FED = "arn:aws:iam::123456789012:oidc-provider/idp.example.com"


def policy(*statements) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(**condition) -> dict:
    return {
        "Effect": "Allow",
        "Principal": {"Federated": FED},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": condition,
    }


def req(context=None, action="sts:AssumeRoleWithWebIdentity", federated=FED) -> Request:
    return Request(action, federated, context or {})


@pytest.mark.parametrize(
    ("document", "request_", "expected"),
    [
        (policy(allow()), req(), True),
        (policy(), req(), False),
        (policy(allow()), req(federated="arn:aws:iam::123456789012:oidc-provider/other"), False),
        (policy(allow()), req(action="sts:AssumeRole"), False),
        (policy({**allow(), "Action": "sts:*"}), req(action="sts:TagSession"), True),
        (policy({**allow(), "Action": ["sts:TagSession", "sts:AssumeRoleWithWebIdentity"]}), req(), True),
        (policy(allow(StringEquals={"k": "v"})), req({"k": "v"}), True),
        (policy(allow(StringEquals={"k": "v"})), req({"k": "V"}), False),
        (policy(allow(StringEquals={"k": "v"})), req({"K": "v"}), True),  # keys are case-insensitive
        (policy(allow(StringEquals={"k": "v"})), req({}), False),  # absent key: false
        (policy(allow(StringEquals={"k": ["a", "v"]})), req({"k": "v"}), True),  # values ORed
        (policy(allow(StringEquals={"k": "v", "j": "w"})), req({"k": "v", "j": "x"}), False),  # keys ANDed
        (policy(allow(StringEquals={"k": "v"}, StringLike={"j": "w*"})), req({"k": "v", "j": "wx"}), True),
        (policy(allow(StringEquals={"k": "v"}, StringLike={"j": "w*"})), req({"k": "v", "j": "xw"}), False),
        (policy(allow(StringLike={"k": "a?c"})), req({"k": "abc"}), True),
        (policy(allow(StringLike={"k": "a?c"})), req({"k": "ac"}), False),
        (policy(allow(StringLike={"k": "a*"})), req({"k": "a/b/c"}), True),
        (policy(allow(StringEquals={"k": "a*"})), req({"k": "ab"}), False),  # no wildcards in Equals
        (policy(allow(StringNotEquals={"k": "v"})), req({"k": "w"}), True),
        (policy(allow(StringNotEquals={"k": "v"})), req({}), True),
        (policy(allow(StringNotLike={"k": "v*"})), req({"k": "vw"}), False),
        (policy(allow(StringEqualsIfExists={"k": "v"})), req({}), True),
        (policy(allow(StringEqualsIfExists={"k": "v"})), req({"k": "w"}), False),
        (
            policy(allow(StringEquals={"aws:RequestTag/ref_protected": "true"})),
            req({"aws:RequestTag/ref_protected": "true"}),
            True,
        ),
        (policy(allow(), {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sts:*"}), req(), False),
        (policy(allow(), {"Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRole"}), req(), True),
        (policy({"Effect": "Allow", "Principal": "*", "Action": "sts:*"}), req(), True),
    ],
)
def test_evaluator_table(document, request_, expected):
    assert allows(document, request_) is expected


@pytest.mark.parametrize(
    "statement",
    [
        allow(NumericLessThan={"k": "1"}),
        {**allow(), "NotAction": "x"},
        {**allow(), "Effect": "Maybe"},
    ],
)
def test_evaluator_refuses_what_it_does_not_model(statement):
    with pytest.raises(UnsupportedPolicy):
        allows(policy(statement), req({"k": "1"}))


def test_tag_session_is_evaluated_too_when_the_token_carries_tags():
    document = policy(allow())  # allows the assume, but not sts:TagSession
    requests = iam_eval.web_identity_requests(
        provider_url="https://idp.example.com", account_id=ACCOUNT_ID, sub="s", aud="a", request_tags={"x": "y"}
    )
    assert [r.action for r in requests] == ["sts:AssumeRoleWithWebIdentity", "sts:TagSession"]
    assert not all(allows(document, r) for r in requests)


def test_tag_values_are_exact_so_iam_is_never_looser(web_main_claims):
    """'prod#' is refused as a pattern on a role with tags (no tag value can hold '#'); a row
    written before that grants nothing and is left out of the policy, so the job with environment
    'prod_' (which the old sanitiser made look like 'prod#') is refused by both."""
    rule = make_rule(project=web_main_claims["project_path"], environment="prod#", ref_type="any", ref="*")
    result = policies.generate(make_input([rule]))
    assert result.document == policies.trusts_nobody()
    assert any("grants nothing" in w and "'#'" in w for w in result.warnings)
    for environment in ("prod_", "prod#"):
        claims = {**web_main_claims, "environment": environment}
        assert not evaluate(rule, claims, NOW).matched
        assert not minted_allowed(result.document, claims)


# --- the property -------------------------------------------------------------------------------

# Alphabets kept small so patterns and values collide often; no ':' (never in a GitLab path or ref).
# Hostile values, several roles and accounts: tests/iam/test_role_binding.py.
VALUE = st.text(alphabet="ab/", min_size=1, max_size=4)
PATTERN = st.text(alphabet="ab/*?", min_size=1, max_size=4).filter(lambda p: "**" not in p)
ISSUERS = ("gitlab-com", "gitlab-self")


@st.composite
def rules_strategy(draw):
    count = draw(st.integers(min_value=0, max_value=5))
    rules = []
    for index in range(count):
        rules.append(
            make_rule(
                f"m{index}",
                issuer=draw(st.sampled_from(ISSUERS)),
                project=draw(PATTERN),
                ref=draw(PATTERN),
                ref_type=draw(st.sampled_from(["branch", "tag", "any"])),
                protected=draw(st.booleans()),
                # Often from a small pool, so mappings share a statement (and compaction) often.
                environment=draw(st.sampled_from([None, None, "a*", "b"]) | PATTERN),
                pipeline_sources=draw(
                    st.sampled_from([(), (), ("push",), ("push", "web")])
                    | st.lists(st.sampled_from(["push", "web", "api"]), unique=True).map(tuple)
                ),
                expires_at=draw(st.sampled_from([None, None, NOW - timedelta(hours=1), NOW + timedelta(hours=1)])),
                enabled=draw(st.sampled_from([True, True, True, False])),
            )
        )
    return rules


@st.composite
def matching_value(draw, pattern: str) -> str:
    """A value ``pattern`` matches: each '*' a short run, each '?' one character."""
    out = []
    for char in pattern:
        if char == "*":
            out.append(draw(st.text(alphabet="ab/", max_size=2)))
        elif char == "?":
            out.append(draw(st.sampled_from("ab/")))
        else:
            out.append(char)
    return "".join(out) or "a"


@st.composite
def case_strategy(draw):
    """Rules, and claims of a job that often comes close to one of them: each field either meets
    that rule's condition or is random, so grants and near misses on every field are common."""
    rules = draw(rules_strategy())
    near = draw(st.sampled_from(rules)) if rules and draw(st.booleans() | st.just(True)) else None

    def field(pattern, random):
        if near is not None and pattern is not None and draw(st.integers(0, 4)):
            return draw(matching_value(pattern))
        return draw(random)

    claims = {
        "project_path": field(near and near.project, VALUE),
        "ref": field(near and near.ref, VALUE),
        "ref_type": field(
            near and near.ref_type if near and near.ref_type != "any" else None, st.sampled_from(["branch", "tag"])
        ),
        "ref_protected": draw(st.sampled_from(["true", "false"])),
        "pipeline_source": (
            draw(st.sampled_from(near.pipeline_sources))
            if near is not None and near.pipeline_sources and draw(st.integers(0, 4))
            else draw(st.sampled_from(["push", "web", "api", "schedule"]))
        ),
        "namespace_path": "a",
    }
    if near is not None and near.protected and draw(st.integers(0, 4)):
        claims["ref_protected"] = "true"
    environment = field(near and near.environment, st.none() | VALUE)
    if environment is not None:
        claims["environment"] = environment
    issuer = near.issuer if near is not None and draw(st.integers(0, 4)) else draw(st.sampled_from(ISSUERS))
    return rules, claims, issuer


def minted_allowed(document, claims, *, issuer="gitlab-com", session_tags=True) -> bool:
    return iam_eval.minted_token_allowed(
        document,
        rolegate_issuer=ROLEGATE,
        account_id=ACCOUNT_ID,
        audience="sts.amazonaws.com",
        issuer_name=issuer,
        claims=claims,
        mapping_name="whichever",
        session_tags=session_tags,
        role_name="deploy-web",
    )


PROPERTY_EXAMPLES = property_examples()  # ROLEGATE_HYPOTHESIS_EXAMPLES (tests/properties.py)


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=case_strategy())
def test_brokered_policy_allows_exactly_what_the_matcher_grants(case):
    rules, claims, issuer = case
    result = policies.generate(make_input(rules, limit=4096))
    granted = any(evaluate(rule, claims, NOW).matched for rule in rules if rule.issuer == issuer)
    assert minted_allowed(result.document, claims, issuer=issuer) is granted


@settings(max_examples=200, deadline=None)
@given(case=case_strategy())
def test_brokered_policy_without_session_tags_allows_exactly_what_the_matcher_grants(case):
    """Mappings with conditions IAM could check only through session tags grant nothing, in the
    matcher and in the policy alike."""
    rules, claims, issuer = case
    rules = [changed(rule, session_tags=False) for rule in rules]
    result = policies.generate(make_input(rules, limit=4096, session_tags=False))
    granted = any(evaluate(rule, claims, NOW).matched for rule in rules if rule.issuer == issuer)
    allowed = minted_allowed(result.document, claims, issuer=issuer, session_tags=False)
    assert allowed is granted


@settings(max_examples=200, deadline=None)
@given(case=case_strategy())
def test_direct_policy_is_the_matcher_minus_the_conditions_iam_cannot_see(case):
    rules, claims, _ = case
    rules = [r for r in rules if r.issuer == "gitlab-com"]
    result = policies.generate(make_input(rules, mode="direct", limit=4096))
    allowed = iam_eval.gitlab_token_allowed(
        result.document, issuer_url=GITLAB.url, account_id=ACCOUNT_ID, aud=GITLAB.audiences[0], claims=claims
    )
    loose = [replace(r, protected=False, environment=None, pipeline_sources=()) for r in rules]
    assert allowed is any(evaluate(rule, claims, NOW).matched for rule in loose)
    strict_granted = any(evaluate(rule, claims, NOW).matched for rule in rules)
    assert allowed or not strict_granted
    if allowed and not strict_granted:
        assert result.warnings
