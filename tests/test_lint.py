"""Breadth lint (mappings.lint): one case per warning, each with the near miss that must stay quiet."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from mappings import lint, patterns
from mappings.matching import Rule
from tests.rules import flat_rule

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DEPLOY = "arn:aws:iam::123456789012:role/deploy-web"
OTHER = "arn:aws:iam::123456789012:role/read-only"


def rule(name: str, role_arn: str = DEPLOY, **overrides) -> Rule:
    fields = dict(
        id=hash(name) & 0xFFFF,
        name=name,
        issuer="gitlab-example",
        role_arn=role_arn,
        role_name=role_arn.rsplit("/", 1)[1],
        account_name="prod",
        account_id="123456789012",
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


def codes(*rules: Rule) -> dict[str, list[str]]:
    return {name: [w.code for w in found] for name, found in lint.by_mapping(lint.lint(rules, NOW)).items()}


def test_a_careful_mapping_has_no_warning():
    assert codes(rule("web-main")) == {}


def test_wildcard_project_with_unprotected_refs():
    assert codes(rule("everything", project="platform/*", protected=False)) == {
        "everything": [lint.WILDCARD_PROJECT_UNPROTECTED]
    }
    assert codes(rule("one-project", project="platform/web", protected=False)) == {}
    assert codes(rule("protected", project="platform/*", protected=True)) == {}


def test_merge_request_pipelines_on_a_role_that_deploys_from_protected_refs():
    deploy = rule("deploy", protected=True, pipeline_sources=("push",))
    review = rule("review", protected=False, ref="*", pipeline_sources=("merge_request_event",))
    found = lint.lint([deploy, review], NOW)
    assert [(w.mapping, w.code) for w in found] == [("review", lint.UNTRUSTED_PIPELINE_SOURCE)]
    assert "merge_request_event" in found[0].message and "deploy" in found[0].message
    # Any source includes both untrusted ones.
    anything = rule("anything", protected=False, ref="feature/*", pipeline_sources=())
    assert codes(deploy, anything) == {"anything": [lint.UNTRUSTED_PIPELINE_SOURCE]}
    external = rule("external", protected=False, ref="*", pipeline_sources=("external_pull_request_event",))
    assert codes(deploy, external) == {"external": [lint.UNTRUSTED_PIPELINE_SOURCE]}


def test_merge_request_pipelines_stay_quiet_without_a_protected_deploy_or_when_protected():
    review = rule("review", protected=False, ref="*", pipeline_sources=("merge_request_event",))
    assert codes(review) == {}  # nothing on the role deploys from protected refs
    assert codes(rule("deploy", role_arn=OTHER), review) == {}  # the deploy is another role's
    assert (
        codes(rule("deploy"), rule("review", protected=True, ref="*", pipeline_sources=("merge_request_event",))) == {}
    )
    assert codes(rule("deploy"), rule("pushes", protected=False, ref="dev", pipeline_sources=("push",))) == {}
    # A disabled or expired protected mapping deploys nothing.
    assert codes(rule("deploy", enabled=False), review) == {}


def test_a_mapping_another_one_covers_is_redundant():
    broad = rule("platform-all", project="platform/*", ref="*", ref_type="any")
    narrow = rule("web-main", project="platform/web", ref="main")
    found = lint.lint([broad, narrow], NOW)
    assert [(w.mapping, w.code) for w in found] == [("web-main", lint.REDUNDANT)]
    assert "platform-all" in found[0].message


def test_two_identical_mappings_report_only_one():
    assert codes(rule("a"), rule("b")) == {"b": [lint.REDUNDANT]}


def test_redundancy_needs_every_condition_covered():
    broad = rule("broad", project="platform/*", ref="*", ref_type="any")
    # Each mapping escapes the broad one by exactly one condition: none is redundant.
    for escaping in (
        rule("other-role", role_arn=OTHER),
        rule("other-issuer", issuer="gitlab-other"),
        rule("wider-project", project="*"),
    ):
        assert codes(broad, escaping) == {}, escaping.name
    tight = rule("tight", protected=True, environment="production", pipeline_sources=("push",))
    looser = {  # each differs from tight in one condition; True when it covers tight
        "loose-protected": (dict(protected=False), True),
        "loose-environment": (dict(environment=None), True),
        "wider-environment": (dict(environment="prod*"), True),
        "other-environment": (dict(environment="staging"), False),
        "loose-sources": (dict(pipeline_sources=()), True),
        "more-sources": (dict(pipeline_sources=("push", "web")), True),
        "other-sources": (dict(pipeline_sources=("web",)), False),
        "tag": (dict(ref_type="tag"), False),
        "any-ref-type": (dict(ref_type="any"), True),
    }
    for name, (change, covers) in looser.items():
        other = replace(tight, name=name, **change)
        expected = {"tight": [lint.REDUNDANT]} if covers else {}
        assert codes(tight, other) == expected, name


def test_a_mapping_expiring_sooner_is_covered_but_not_one_lasting_longer():
    lasting = rule("lasting", expires_at=NOW + timedelta(days=30))
    brief = rule("brief", expires_at=NOW + timedelta(days=1))
    assert codes(lasting, brief) == {"brief": [lint.REDUNDANT]}
    forever = rule("forever")
    assert codes(lasting, forever) == {"lasting": [lint.REDUNDANT]}


def test_an_expired_mapping_never_grants():
    expired = rule("old", expires_at=NOW - timedelta(minutes=1))
    assert codes(expired) == {"old": [lint.NEVER_GRANTS]}
    assert codes(rule("old", expires_at=NOW + timedelta(minutes=1))) == {}
    # Switched off on purpose: no warning, and it covers nothing.
    assert codes(rule("off", enabled=False, expires_at=NOW - timedelta(days=1))) == {}
    assert codes(rule("off", enabled=False, project="*", ref="*"), rule("web-main")) == {}


def test_a_conditioned_mapping_of_a_role_without_session_tags_never_grants():
    assert codes(rule("tagless", session_tags=False, protected=True)) == {"tagless": [lint.NEVER_GRANTS]}
    assert codes(rule("tagless", session_tags=False, protected=False)) == {}
    assert codes(rule("direct", session_tags=False, account_mode="direct", protected=True)) == {}


_pattern = st.text(alphabet="ab/*?", min_size=1, max_size=6)
_value = st.text(alphabet="ab/", max_size=6)


@given(general=_pattern, specific=_pattern, value=_value)
def test_redundant_means_every_job_the_mapping_grants_the_other_grants_too(general, specific, value):
    """Never a false warning: a mapping reported redundant grants nothing the other does not."""
    other = rule("a-general", project=general, ref="*", ref_type="any", protected=False, pipeline_sources=("push",))
    mapping = rule("b-specific", project=specific, ref="main", protected=False, pipeline_sources=("push",))
    if lint.covers(other, mapping) and patterns.matches(specific, value):
        assert patterns.matches(general, value)
