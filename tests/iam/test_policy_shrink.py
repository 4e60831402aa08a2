"""The shrink-only policy (mappings.policy_shrink) never admits what the live or the desired
policy refuses, by the project's IAM evaluator; and it keeps what both still grant."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappings import iam_eval, policies
from mappings.policy_shrink import missing, shrink_only
from tests.iam.conftest import ACCOUNT_ID, ROLEGATE, make_input, make_rule
from tests.iam.test_iam_eval import case_strategy, minted_allowed, rules_strategy
from tests.properties import property_examples
from tests.rules import changed

EXAMPLES = property_examples()  # ROLEGATE_HYPOTHESIS_EXAMPLES (tests/properties.py)
HOST = policies.provider_host(ROLEGATE)
FED = policies.provider_arn(ACCOUNT_ID, ROLEGATE)


@st.composite
def live_and_desired(draw):
    """Two policies of one role: before and after a registry change (some mappings kept, some
    dropped, some new; session tags possibly switched), claims near one of the mappings, and
    now and then a hand-written statement in the live policy."""
    rules, claims, issuer = draw(case_strategy())
    # Live mappings (the generator's handling of disabled and expired ones is tested elsewhere).
    rules = [replace(rule, enabled=True, expires_at=None) for rule in rules]
    kept = [rule for rule in rules if draw(st.booleans())]
    added = [replace(rule, name=f"new-{rule.name}") for rule in draw(rules_strategy())][: draw(st.integers(0, 2))]
    live_tags = draw(st.booleans())
    desired_tags = draw(st.sampled_from([live_tags, live_tags, not live_tags]))
    live = policies.generate(
        make_input([changed(r, session_tags=live_tags) for r in rules], session_tags=live_tags, limit=10**6)
    )
    desired = policies.generate(
        make_input(
            [changed(r, session_tags=desired_tags) for r in kept + added], session_tags=desired_tags, limit=10**6
        )
    )
    live_document = live.document
    extra = draw(
        st.sampled_from(
            [
                None,
                {"Effect": "Allow", "Principal": {"Federated": FED}, "Action": "sts:AssumeRoleWithWebIdentity"},
                {
                    "Effect": "Deny",
                    "Principal": {"Federated": FED},
                    "Action": "sts:*",
                    "Condition": {"StringLike": {f"{HOST}:sub": "gitlab-com:project_path:a*"}},
                },
            ]
        )
    )
    if extra is not None and live_document["Statement"][0]["Effect"] == "Allow":
        live_document = {**live_document, "Statement": [*live_document["Statement"], extra]}
    # The job's token carries session tags when one of the two policies expects them.
    return live_document, desired.document, claims, issuer, draw(st.sampled_from([live_tags, desired_tags]))


def requests(claims, issuer, session_tags):
    from mappings import minted

    sub = minted.minted_sub(
        issuer, claims["project_path"], claims["ref_type"], claims["ref"], account_id=ACCOUNT_ID, role_name="deploy-web"
    )
    tags = {k: v[0] for k, v in minted.principal_tags(claims, "m").items()} if session_tags else None
    return iam_eval.web_identity_requests(
        provider_url=ROLEGATE, account_id=ACCOUNT_ID, sub=sub, aud="sts.amazonaws.com", request_tags=tags
    )


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=live_and_desired(), limit=st.sampled_from([2048, 10**6]))
def test_the_shrink_only_policy_admits_nothing_the_live_or_the_desired_policy_refuses(case, limit):
    live, desired, claims, issuer, tags = case
    fallback = shrink_only(live, desired, limit=max(limit, policies.policy_size(live)))
    assert policies.policy_size(fallback) <= max(limit, policies.policy_size(live))
    for request in requests(claims, issuer, tags):
        if iam_eval.allows(fallback, request):
            assert iam_eval.allows(live, request), (request, fallback)
            assert iam_eval.allows(desired, request), (request, fallback)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=case_strategy(), data=st.data())
def test_a_pure_removal_keeps_every_trust_that_stays(case, data):
    """Mappings only removed (the incident case): the fallback, when the intersection fits,
    admits every token the desired policy admits."""
    rules, claims, issuer = case
    kept = [rule for rule in rules if data.draw(st.booleans())]
    live = policies.generate(make_input(rules, limit=10**6)).document
    desired = policies.generate(make_input(kept, limit=10**6)).document
    fallback = shrink_only(live, desired, limit=10**6)
    assert minted_allowed(fallback, claims, issuer=issuer) is minted_allowed(desired, claims, issuer=issuer)


def test_a_removed_mapping_leaves_and_the_rest_stays_within_the_live_size():
    web = make_rule("web", project="platform/web")
    api = make_rule("api", project="platform/api")
    old = make_rule("old", project="legacy/app")
    live = policies.generate(make_input([web, api, old])).document
    many = [make_rule(f"n{i:03}", project=f"team-{i:03}/service-with-a-long-name") for i in range(40)]
    desired_result = policies.generate(make_input([web, api, *many]))
    assert not desired_result.fits
    fallback = shrink_only(live, desired_result.document, limit=2048)
    assert policies.policy_size(fallback) <= policies.policy_size(live)
    claims = {
        "project_path": "legacy/app",
        "ref": "main",
        "ref_type": "branch",
        "ref_protected": "false",
        "pipeline_source": "push",
        "namespace_path": "legacy",
    }
    assert minted_allowed(live, claims)
    assert not minted_allowed(fallback, claims)
    assert minted_allowed(fallback, {**claims, "project_path": "platform/web"})
    assert minted_allowed(fallback, {**claims, "project_path": "platform/api"})
    assert not minted_allowed(fallback, {**claims, "project_path": "team-001/service-with-a-long-name"})
    # What it lacks, mapping by mapping.
    lacking = [
        r.name for r in [web, api, *many] if missing(fallback, policies.generate(make_input([r])).document["Statement"])
    ]
    assert lacking == [r.name for r in many]


def test_a_tightened_mapping_keeps_its_narrower_trust():
    """A mapping gains protected: true while the policy cannot be written in full: the fallback
    admits its protected jobs (in both policies) and refuses the unprotected ones."""
    loose = make_rule("web", project="platform/web")
    live = policies.generate(make_input([loose])).document
    desired = policies.generate(make_input([replace(loose, protected=True)])).document
    fallback = shrink_only(live, desired, limit=2048)
    claims = {
        "project_path": "platform/web",
        "ref": "main",
        "ref_type": "branch",
        "ref_protected": "true",
        "pipeline_source": "push",
        "namespace_path": "platform",
    }
    assert minted_allowed(fallback, claims)
    assert not minted_allowed(fallback, {**claims, "ref_protected": "false"})


def test_nothing_left_is_a_policy_that_trusts_nobody():
    live = policies.generate(make_input([make_rule("web")])).document
    desired = policies.generate(make_input([])).document
    assert shrink_only(live, desired, limit=2048) == policies.trusts_nobody()
    direct = policies.generate(make_input([make_rule("web")], mode="direct")).document
    assert shrink_only(direct, live, limit=2048) == policies.trusts_nobody()  # another provider
