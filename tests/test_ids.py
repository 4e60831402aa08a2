"""Mappings bound on GitLab's ids, which it never reuses (project_id, namespace_id): the matcher's
table, the registry's index of mappings bound by id alone, the generated trust policy with and
without session tags (judged by the IAM evaluator on the token Rolegate would mint), lint and the
guardrails."""

from __future__ import annotations

import pytest

from mappings import guardrails, iam_eval, lint, matching, minted, policies
from mappings.matching import Registry, decide
from tests.exchange.gitlab_stand_in import with_claims
from tests.iam.conftest import ACCOUNT_ID, GITLAB, NOW, make_input, make_rule
from tests.rules import changed
from tests.test_conditions import admitted


def bound(name: str = "web-bound", **overrides):
    """platform/web's main branch while it is project 20 in namespace 72 (web_main_claims)."""
    fields = dict(project="platform/web", project_id="20", namespace_id="72")
    fields.update(overrides)
    return make_rule(name, **fields)


# --- the matcher ---------------------------------------------------------------------------------

TABLE = [
    # (rule overrides, claim overrides, failed fields)
    ({}, {}, []),
    ({}, {"project_id": "99"}, ["project_id"]),  # the path re-created: a new project
    ({}, {"namespace_id": "73"}, ["namespace_id"]),  # the namespace freed and reclaimed
    ({}, {"project_id": "99", "namespace_id": "73"}, ["project_id", "namespace_id"]),
    ({}, {"project_id": None}, ["project_id"]),  # absent never matches
    ({}, {"namespace_id": None}, ["namespace_id"]),
    ({}, {"project_id": "020"}, ["project_id"]),  # exact text: no numeric reading
    ({}, {"project_id": " 20"}, ["project_id"]),
    ({}, {"project_id": 20}, ["project_id"]),  # a number is not the claim (refused before the matcher)
    ({"namespace_id": None}, {"namespace_id": None}, []),
    ({"project_id": None}, {"project_id": "99"}, []),
    ({"project_id": None, "namespace_id": None}, {"project_id": "99", "namespace_id": None}, []),
    # Bound by id alone: any path.
    ({"project": "*", "namespace_id": None}, {"project_path": "platform/website"}, []),
    ({"project": "*", "namespace_id": None}, {"project_path": "elsewhere/web", "namespace_id": "90"}, []),
    ({"project": "*", "namespace_id": None}, {"project_path": "platform/web", "project_id": "21"}, ["project_id"]),
    ({"project": "*", "project_id": None}, {"project_path": "platform/api", "project_id": "21"}, []),
    ({"project": "*", "project_id": None}, {"namespace_id": "7"}, ["namespace_id"]),
    # The path still counts where the mapping names one.
    ({}, {"project_path": "platform/website"}, ["project"]),
]


@pytest.mark.parametrize(("rule_overrides", "claim_overrides", "failed"), TABLE)
def test_matcher_table(web_main_claims, rule_overrides, claim_overrides, failed):
    rule = bound(**rule_overrides)
    claims = with_claims(web_main_claims, claim_overrides)
    evaluation = matching.evaluate(rule, claims, NOW)
    assert [f.field for f in evaluation.failed] == failed
    assert decide(Registry([rule]), issuer="gitlab-com", claims=claims, now=NOW).granted is (not failed)


def test_a_failure_names_both_ids(web_main_claims):
    evaluation = matching.evaluate(bound(), with_claims(web_main_claims, {"project_id": "99"}), NOW)
    [failure] = evaluation.failed
    assert (failure.field, failure.pattern, failure.value) == ("project_id", "20", "99")
    assert failure.sentence() == "project_id '20' does not match '99'"


def test_the_registry_finds_mappings_bound_by_id_alone_by_their_id(web_main_claims):
    """A mapping whose project is '*' and that names an id is a candidate only for tokens with
    that id (it could match no other); one that also names a path stays under its path, so explain
    shows it failing on the id to the job at that path."""
    by_project = bound("by-project", project="*", namespace_id=None)
    by_namespace = bound("by-namespace", project="*", project_id=None)
    both = bound("both", project="*")
    path_and_id = bound("path-and-id")
    registry = Registry([by_project, by_namespace, both, path_and_id, make_rule("plain")])

    def names(project_id, namespace_id, path="platform/web"):
        return [r.name for r in registry.candidates("gitlab-com", path, project_id, namespace_id)]

    assert names("20", "72") == ["both", "by-namespace", "by-project", "path-and-id", "plain"]
    assert names("99", "73") == ["path-and-id", "plain"]
    assert names("20", None, "other/x") == ["both", "by-project"]  # "both" is indexed by its project_id
    assert names(None, "72", "other/x") == ["by-namespace"]
    # The decision agrees with evaluating every mapping.
    for claims in (
        web_main_claims,
        {**web_main_claims, "project_path": "other/x"},
        {**web_main_claims, "project_id": "99"},
        {**web_main_claims, "namespace_id": "73", "project_path": "other/x"},
    ):
        everything = {r.name for r in registry.rules() if matching.evaluate(r, claims, NOW).matched}
        found = decide(registry, issuer="gitlab-com", claims=claims, now=NOW)
        assert {e.rule.name for e in found.evaluations if e.matched} == everything


def test_without_session_tags_a_brokered_mapping_bound_on_an_id_grants_nothing(web_main_claims):
    for overrides in ({"namespace_id": None}, {"project_id": None}):
        rule = bound(session_tags=False, **overrides)
        assert matching.unenforceable(rule)
        assert [f.field for f in matching.evaluate(rule, web_main_claims, NOW).failed] == ["session_tags"]
        [warning] = policies.unchecked_conditions(rule, mode="brokered", session_tags=False)
        assert "grants nothing" in warning and ("project_id" in warning or "namespace_id" in warning)


# --- the minted token ----------------------------------------------------------------------------


def test_minted_tokens_carry_both_ids_as_session_tags(web_main_claims):
    tags = minted.principal_tags(web_main_claims, "web-bound")
    assert (tags["project_id"], tags["namespace_id"]) == (["20"], ["72"])
    assert len(minted.PRINCIPAL_TAG_KEYS) <= 50  # STS: at most 50 session tags
    # A value that is not a string is no tag (the exchange refuses it before minting anyway).
    assert "project_id" not in minted.principal_tags({**web_main_claims, "project_id": 20}, "m")


# --- the generated trust policy, judged by the evaluator -------------------------------------------


def test_with_session_tags_iam_requires_each_id(web_main_claims):
    rule = bound()
    result = policies.generate(make_input([rule]))
    assert result.fits and result.warnings == ()
    [statement] = result.document["Statement"]
    equals = statement["Condition"]["StringEquals"]
    assert (equals["aws:RequestTag/project_id"], equals["aws:RequestTag/namespace_id"]) == ("20", "72")
    assert admitted(result.document, rule, web_main_claims)
    # What the matcher refuses, IAM refuses too, row by row (tokens Rolegate would never mint,
    # presented anyway: the two layers agree).
    for rule_overrides, claim_overrides, failed in TABLE:
        row_rule = bound(**rule_overrides)
        claims = with_claims(web_main_claims, claim_overrides)
        if not isinstance(claims.get("project_id"), str):
            continue  # refused by the exchange before any token is minted (invalid_claim)
        document = policies.generate(make_input([row_rule])).document
        assert admitted(document, row_rule, claims) is (not failed), (rule_overrides, claim_overrides)


def test_a_mapping_bound_by_id_alone_has_a_wildcard_project_in_its_sub_and_iam_checks_the_id(web_main_claims):
    rule = bound(project="*", namespace_id=None)
    [statement] = policies.generate(make_input([rule])).document["Statement"]
    sub = statement["Condition"]["StringLike"]["rolegate.example.com:sub"]
    assert sub == f"gitlab-com:project_path:*:ref_type:branch:ref:main:role:{ACCOUNT_ID}/deploy-web"
    assert statement["Condition"]["StringEquals"]["aws:RequestTag/project_id"] == "20"
    document = policies.generate(make_input([rule])).document
    assert admitted(document, rule, {**web_main_claims, "project_path": "platform/website"})
    assert not admitted(document, rule, {**web_main_claims, "project_id": "21"})
    assert not admitted(document, rule, {key: v for key, v in web_main_claims.items() if key != "project_id"})


def test_mappings_with_different_ids_are_separate_statements(web_main_claims):
    """IAM ANDs the keys of a statement: two projects' ids in one statement with both subs would
    let project 21 in at platform/web's path. Each id keeps its own statement; a mapping without
    ids whose sub covers an id-bound one absorbs it (it grants more)."""
    web = bound("web", namespace_id=None)
    api = bound("api", project="platform/api", project_id="21", namespace_id=None)
    document = policies.generate(make_input([web, api])).document
    assert len(document["Statement"]) == 2
    assert not admitted(document, web, {**web_main_claims, "project_id": "21"})
    assert admitted(document, api, {**web_main_claims, "project_path": "platform/api", "project_id": "21"})
    loose = make_rule("loose", project="platform/*")
    [statement] = policies.generate(make_input([web, loose])).document["Statement"]
    assert "aws:RequestTag/project_id" not in statement["Condition"]["StringEquals"]


def test_in_direct_mode_the_ids_are_listed_as_unchecked_by_iam(web_main_claims):
    rule = bound(account_mode="direct")
    result = policies.generate(make_input([rule], mode="direct"))
    assert set(result.warnings) >= {
        "mapping web-bound: 'project_id' is not enforced by IAM (GitLab's token carries no session tags IAM could "
        "check)",
        "mapping web-bound: 'namespace_id' is not enforced by IAM (GitLab's token carries no session tags IAM "
        "could check)",
    }
    assert iam_eval.gitlab_token_allowed(
        result.document,
        issuer_url=GITLAB.url,
        account_id=ACCOUNT_ID,
        aud="https://rolegate.example.com",
        claims={**web_main_claims, "project_id": "99"},
    )  # IAM lets the re-created project in: only explain and the warnings say otherwise


def test_a_brokered_role_without_tags_leaves_an_id_bound_mapping_out(web_main_claims):
    rule = bound(session_tags=False)
    result = policies.generate(make_input([rule], session_tags=False))
    assert result.document == policies.trusts_nobody()
    assert any("grants nothing" in w and "project_id/namespace_id" in w for w in result.warnings)


# --- lint and guardrails ---------------------------------------------------------------------------


def test_lint_compares_ids_exactly():
    web = bound("web")
    other = bound("other", project_id="21")
    by_path = make_rule("by-path", project="platform/*")
    assert lint.covers(by_path, web) and not lint.covers(web, by_path)
    assert not lint.covers(web, other) and not lint.covers(other, web)
    anywhere = bound("anywhere", project="*")
    assert lint.covers(anywhere, web) and not lint.covers(web, anywhere)
    [warning] = [w for w in lint.lint([web, anywhere], NOW)]
    assert (warning.mapping, warning.code) == ("web", lint.REDUNDANT)


def test_lint_never_grants_names_the_ids_on_a_role_without_tags():
    [warning] = lint.lint([bound(session_tags=False)], NOW)
    assert warning.code == lint.NEVER_GRANTS and "project_id/namespace_id" in warning.message


def test_a_wildcard_project_bound_by_project_id_is_one_project():
    by_id = bound("by-id", project="*", namespace_id=None)
    assert lint.lint([by_id], NOW) == []
    # In a direct account IAM does not see the id: the pattern is what it lets in.
    [warning] = lint.lint([changed(by_id, account_mode="direct")], NOW)
    assert warning.code == lint.WILDCARD_PROJECT_UNPROTECTED
    [warning] = lint.lint([bound("by-ns", project="*", project_id=None)], NOW)
    assert warning.code == lint.WILDCARD_PROJECT_UNPROTECTED and "in namespace id 72" in warning.message


def id_violations(project: str, *, rails: guardrails.Guardrails | None = None, **fields) -> list[guardrails.Violation]:
    """The guardrail and mode violations of a protected mapping on ``project`` without other
    conditions, with ``fields`` (its ids, ``direct``, ``account``)."""
    return guardrails.mapping_violations(
        rails or guardrails.Guardrails(),
        project=project,
        protected=True,
        environment=None,
        pipeline_sources=(),
        **fields,
    )


@pytest.mark.parametrize(
    ("limit", "project", "project_id", "namespace_id", "direct", "refused"),
    [
        ("project", "*", "20", None, False, False),
        ("project", "platform/*", "20", None, False, False),
        ("project", "*", None, "72", False, True),
        ("namespace", "*", None, "72", False, False),
        ("namespace", "*", None, None, False, True),
        ("project", "platform/web", None, None, True, False),
        ("project", "platform/*", "20", None, True, True),  # direct: IAM never sees the id
        ("namespace", "platform/*", None, "72", True, False),
    ],
)
def test_max_project_breadth_counts_ids_where_iam_checks_them(
    limit, project, project_id, namespace_id, direct, refused
):
    violations = id_violations(
        project,
        project_id=project_id,
        namespace_id=namespace_id,
        direct=direct,
        rails=guardrails.Guardrails(max_project_breadth=limit),
    )
    assert [v.guardrail for v in violations] == (["max_project_breadth"] if refused else [])


@pytest.mark.parametrize("project", ["*", "*/*", "plat*"])
def test_a_direct_account_refuses_ids_with_a_pattern_iam_would_read_as_every_project(project):
    [violation] = id_violations(project, project_id="20", direct=True, account="account legacy")
    assert (violation.field, violation.guardrail) == ("project", guardrails.MODE)
    assert "direct mode" in violation.message and "project_id" in violation.message
    # Brokered, or with a path: fine.
    for direct, pattern in ((False, project), (True, "platform/*")):
        assert not id_violations(pattern, project_id="20", direct=direct)
