"""A minted token is good at one role only, and session tags never stand in for another value.

Checked with the project's IAM evaluator (mappings.iam_eval) on the generated trust policies:
the regressions found in the security review, and a property over random registries (several
accounts and audiences, roles with and without session tags, wildcard patterns, mappings bound on
GitLab's project and namespace ids (beside a path or alone), hostile claim values and ids) in both
directions: every token the matcher grants is admitted by its role, and no minted
token is admitted by any other role.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mappings import iam_eval, matching, minted, policies
from mappings.matching import Registry, Rule, decide
from tests.iam.conftest import GITLAB, NOW, ROLEGATE, make_rule
from tests.properties import property_examples

STAGING_ID, PROD_ID, OTHER_ID = "222222222222", "111111111111", "333333333333"
STS = "sts.amazonaws.com"


def rule(name: str, account_id: str, role_name: str, **overrides) -> Rule:
    fields = {
        "role_arn": f"arn:aws:iam::{account_id}:role/{role_name}",
        "role_name": role_name,
        "account_name": account_id,
        "account_id": account_id,
        "account_audience": STS,
        "ref_type": "branch",
    }
    fields.update(overrides)
    return make_rule(name, **fields)


def role_policy(rules: list[Rule], *, account_id: str, role_name: str, mode="brokered", audience=STS, tags=True):
    """The generated trust policy of one role, from the mappings of the registry that name it."""
    mine = [r for r in rules if r.account_id == account_id and r.role_name == role_name]
    result = policies.generate(
        policies.PolicyInput(
            account_id=account_id,
            mode=mode,
            audience=audience,
            trust_policy_limit=10_000,
            session_tags=tags,
            rolegate_issuer=ROLEGATE,
            issuers=(GITLAB, policies.IssuerInfo("gitlab-self", "https://git.example.com", ("x",))),
            rules=tuple(mine),
            now=NOW,
        )
    )
    assert result.fits
    return result


@dataclass(frozen=True)
class Token:
    """What STS sees of a token the exchange minted for a decision."""

    sub: str
    aud: str
    tags: dict[str, str] | None


def mint(decision: matching.Decision, claims: dict) -> Token:
    """The token the exchange mints for a granted decision (exchange.services.minted_claims)."""
    assert decision.granted and decision.rule is not None and decision.sub is not None
    rule = decision.rule
    tags = minted.principal_tags(claims, rule.name) if rule.session_tags else None
    return Token(decision.sub, rule.account_audience, {k: v[0] for k, v in tags.items()} if tags is not None else None)


def admitted(token: Token, document: dict, account_id: str) -> bool:
    return iam_eval.minted_sub_allowed(
        document, rolegate_issuer=ROLEGATE, account_id=account_id, sub=token.sub, aud=token.aud, request_tags=token.tags
    )


# --- the review's findings, pinned ------------------------------------------------------------


def test_environment_prod_brace_eu_cannot_borrow_prod_deploy_web_with_a_staging_token(web_main_claims):
    """A protected-main job with environment 'prod{eu' (GitLab allows '{') is granted
    staging/deploy-web, whose mapping has no environment condition. Its token used to carry the tag
    environment=prod_eu, which prod/deploy-web's policy accepts. Now its sub names the staging role,
    and it carries no environment tag at all; prod's policy refuses it on both counts."""
    claims = {**web_main_claims, "environment": "prod{eu"}
    for prod_pattern in ("prod_eu", "prod?eu", "prod*"):
        rules = [
            rule("staging-web", STAGING_ID, "deploy-web", protected=True),
            rule("prod-web", PROD_ID, "deploy-web", protected=True, environment=prod_pattern),
        ]
        registry = Registry(rules)
        staging = decide(registry, issuer="gitlab-com", claims=claims, now=NOW, role_arn=rules[0].role_arn)
        token = mint(staging, claims)
        assert "environment" not in token.tags
        assert token.sub.endswith(f":role:{STAGING_ID}/deploy-web")
        assert admitted(token, role_policy(rules, account_id=STAGING_ID, role_name="deploy-web").document, STAGING_ID)
        prod_policy = role_policy(rules, account_id=PROD_ID, role_name="deploy-web").document
        assert not admitted(token, prod_policy, PROD_ID)
        # Rolegate does not grant prod/deploy-web to this job either (the patterns that match
        # 'prod{eu' are refused as claim_not_taggable: the token could not carry the tag).
        prod = decide(registry, issuer="gitlab-com", claims=claims, now=NOW, role_arn=rules[1].role_arn)
        assert not prod.granted
        assert prod.reason == (
            matching.NO_MATCHING_MAPPING if prod_pattern == "prod_eu" else matching.CLAIM_NOT_TAGGABLE
        )
        # Even the sub bound to prod, with these tags, is refused by prod's policy.
        forged = Token(token.sub.replace(STAGING_ID, PROD_ID), token.aud, token.tags)
        assert not admitted(forged, prod_policy, PROD_ID)


def test_a_token_for_a_role_without_tags_is_not_good_at_another_roles_sub_only_statement(web_main_claims):
    """The review's second finding: same project and ref, same audience, no tag conditions."""
    rules = [
        rule("release", PROD_ID, "release-web", session_tags=False),
        rule("readonly", OTHER_ID, "readonly", session_tags=False),
        rule("deploy", PROD_ID, "deploy-web"),
    ]
    registry = Registry(rules)
    token = mint(
        decide(registry, issuer="gitlab-com", claims=web_main_claims, now=NOW, role_arn=rules[0].role_arn),
        web_main_claims,
    )
    assert token.tags is None
    assert admitted(
        token, role_policy(rules, account_id=PROD_ID, role_name="release-web", tags=False).document, PROD_ID
    )
    assert not admitted(
        token, role_policy(rules, account_id=OTHER_ID, role_name="readonly", tags=False).document, OTHER_ID
    )
    assert not admitted(token, role_policy(rules, account_id=PROD_ID, role_name="deploy-web").document, PROD_ID)


def test_pattern_prod_brace_eu_is_not_written_as_prod_eu_(web_main_claims):
    """It used to be written to IAM as 'prod_eu_', so environment 'prod_eu_' passed IAM but not
    the exchange. Now the mapping is left out of the policy with a warning, and the matcher fails
    it: explain, the exchange and IAM all refuse both environments."""
    rules = [rule("prod-web", PROD_ID, "deploy-web", environment="prod{eu}")]
    result = role_policy(rules, account_id=PROD_ID, role_name="deploy-web")
    assert result.document == policies.trusts_nobody()
    assert "prod_eu_" not in result.text if hasattr(result, "text") else True
    assert any("prod-web grants nothing" in w and "'{}'" in w for w in result.warnings)
    registry = Registry(rules)
    for environment in ("prod_eu_", "prod{eu}"):
        claims = {**web_main_claims, "environment": environment}
        decision = decide(registry, issuer="gitlab-com", claims=claims, now=NOW)
        assert not decision.granted
        assert matching.PATTERN_NOT_TAGGABLE in {f.why for f in decision.evaluations[0].failed}
        bound = minted.minted_sub(
            "gitlab-com", claims["project_path"], "branch", "main", account_id=PROD_ID, role_name="deploy-web"
        )
        token = Token(bound, STS, {k: v[0] for k, v in minted.principal_tags(claims, "prod-web").items()})
        assert not admitted(token, result.document, PROD_ID)


def test_exact_tag_patterns_are_written_as_they_are(web_main_claims):
    rules = [rule("review", PROD_ID, "deploy-web", environment="review/ü ?*")]
    result = role_policy(rules, account_id=PROD_ID, role_name="deploy-web")
    [statement] = result.document["Statement"]
    assert statement["Condition"]["StringLike"]["aws:RequestTag/environment"] == "review/ü ?*"
    claims = {**web_main_claims, "environment": "review/ü 1x"}
    token = mint(decide(Registry(rules), issuer="gitlab-com", claims=claims, now=NOW), claims)
    assert token.tags["environment"] == "review/ü 1x"
    assert admitted(token, result.document, PROD_ID)


# --- the property -------------------------------------------------------------------------------

# Accounts: two share the default audience, one has its own; any may be in direct mode.
ACCOUNTS = ((PROD_ID, STS), (STAGING_ID, STS), (OTHER_ID, "rolegate-other"))
# Role names that overlap as prefixes and suffixes of each other, and the same names in several accounts.
ROLE_NAMES = ("deploy-web", "web", "deploy-web2", "a", "a.b", "a-b", "x@y=1,z+")
ISSUERS = ("gitlab-com", "gitlab-self")
PATTERN_CHARS = "ab/{ü."  # literals of project/ref patterns (patterns never hold ':', '$', whitespace)
ENV_PATTERN_CHARS = "ab{}#/."  # '{', '}', '#' no tag can hold: such rows exist from before validation
VALUE_CHARS = "ab/{ü."
CI_PATTERN_CHARS = "ab/@{."  # '{' no tag can hold
HOSTILE_CHARS = "{}$#!~:\t\n\x0b\x0c\r\x1c\x85\u00a0\u2028é𝔘 "
# GitLab's ids as mappings name them (digits), a few shared so that several mappings bind the same
# project or namespace, and one that is a prefix of another.
MAPPING_IDS = ("20", "21", "2", "72", "720")
# Id claims as a token might carry them: the mappings' ids, and hostile strings GitLab never sends
# but a mapping's id could be mistaken for (leading zeros, spaces, other digits, control characters,
# wildcards, a value near a tag's 256 characters).
HOSTILE_IDS = ("020", "20 ", " 20", "2\n0", "٢٠", "２０", "20*", "2?", "*", "", "-20", "20.0", "2" * 255, "2" * 257)


def _pattern(chars: str, max_size: int = 4, common=("*", "a*", "a/b", "?/*")):
    """Often one of a few common patterns, so that several roles' mappings match the same job
    (only the role in the sub then keeps their tokens apart)."""
    drawn = st.lists(st.sampled_from([*chars, "*", "?"]), min_size=1, max_size=max_size).map("".join)
    return st.sampled_from(common) | drawn.filter(lambda p: "**" not in p)


def _value(chars: str):
    short = st.text(alphabet=chars, min_size=1, max_size=5)
    hostile = st.text(alphabet=chars + HOSTILE_CHARS, min_size=1, max_size=6)
    # Near AWS's limits: tags hold 256 characters, a sub 255.
    long = st.tuples(short, st.integers(240, 262)).map(lambda t: (t[0] * 300)[: t[1]])
    return st.one_of(short, short, hostile, long)


@dataclass(frozen=True)
class Role:
    account_id: str
    audience: str
    mode: str
    name: str
    tags: bool


@st.composite
def registries(draw):
    modes = {account: draw(st.sampled_from(["brokered"] * 5 + ["direct"])) for account, _ in ACCOUNTS}
    keys = draw(
        st.lists(st.tuples(st.sampled_from(ACCOUNTS), st.sampled_from(ROLE_NAMES)), min_size=1, max_size=5, unique=True)
    )
    roles = [Role(acct, aud, modes[acct], name, draw(st.booleans())) for (acct, aud), name in keys]
    rules = []
    for index in range(draw(st.integers(1, 7))):
        role = draw(st.sampled_from(roles))
        made = rule(
            f"m{index}",
            role.account_id,
            role.name,
            account_mode=role.mode,
            account_audience=role.audience,
            session_tags=role.tags,
            issuer=draw(st.sampled_from(ISSUERS)),
            project=draw(_pattern(PATTERN_CHARS)),
            ref=draw(_pattern(PATTERN_CHARS)),
            ref_type=draw(st.sampled_from(["branch", "tag", "any"])),
            protected=draw(st.sampled_from([False, False, True])),
            environment=draw(
                st.sampled_from([None, None, None, "a*", "prod?eu", "prod{eu}"])
                | _pattern(ENV_PATTERN_CHARS, common=("*", "a*", "prod*"))
            ),
            pipeline_sources=draw(st.sampled_from([(), (), (), ("push",), ("push", "web")])),
            ci_config_ref_uri=draw(
                st.sampled_from([None, None, None, "a*", "a/b//*@refs/heads/?"]) | _pattern(CI_PATTERN_CHARS)
            ),
            environment_protected=draw(st.sampled_from([False, False, True])),
            deployment_tiers=draw(st.sampled_from([(), (), (), ("production",), ("production", "staging")])),
            runner_environment=draw(st.sampled_from([None, None, "self-hosted", "gitlab-hosted"])),
            project_id=draw(st.sampled_from([None, None, None, *MAPPING_IDS])),
            namespace_id=draw(st.sampled_from([None, None, None, *MAPPING_IDS])),
            expires_at=draw(st.sampled_from([None] * 5 + [NOW - timedelta(hours=1)])),
            enabled=draw(st.sampled_from([True] * 5 + [False])),
        )
        if role.mode == "brokered" and not role.tags and draw(st.integers(0, 3)):
            # Refused when written (IAM could not check them); rows from before still occur.
            made = replace(
                made,
                protected=False,
                environment=None,
                pipeline_sources=(),
                ci_config_ref_uri=None,
                environment_protected=False,
                deployment_tiers=(),
                runner_environment=None,
                project_id=None,
                namespace_id=None,
            )
        if made.project_id is not None and draw(st.integers(0, 2)) == 0:
            made = replace(made, project="*")  # bound by id alone
        rules.append(made)
    return roles, rules


@st.composite
def _matching(draw, pattern: str, chars: str) -> str:
    """A value ``pattern`` matches, sometimes with hostile characters in its wildcards."""
    alphabet = chars + HOSTILE_CHARS if draw(st.integers(0, 3)) == 0 else chars
    out = []
    for char in pattern:
        if char == "*":
            out.append(draw(st.text(alphabet=alphabet, max_size=3)))
        elif char == "?":
            out.append(draw(st.sampled_from(alphabet)))
        else:
            out.append(char)
    return "".join(out)


@st.composite
def cases(draw):
    """A registry, and the claims of a job that often meets one mapping's conditions (each field
    either meets them or is random), so grants, near misses and hostile values are all common."""
    roles, rules = draw(registries())
    near = draw(st.sampled_from(rules)) if rules and draw(st.integers(0, 5)) else None

    def field(pattern, chars, random):
        if near is not None and pattern is not None and draw(st.integers(0, 9)):
            return draw(_matching(pattern, chars))
        return draw(random)

    claims = {
        "project_path": field(near and near.project, VALUE_CHARS, _value(VALUE_CHARS)),
        "ref": field(near and near.ref, VALUE_CHARS, _value(VALUE_CHARS)),
        "ref_type": (
            near.ref_type
            if near is not None and near.ref_type != "any" and draw(st.integers(0, 5))
            else draw(st.sampled_from(["branch", "tag"]))
        ),
        "ref_protected": "true" if near is not None and near.protected else draw(st.sampled_from(["true", "false"])),
        "pipeline_source": (
            draw(st.sampled_from(near.pipeline_sources))
            if near is not None and near.pipeline_sources
            else draw(st.sampled_from(["push", "web", "schedule"]))
        ),
        "namespace_path": draw(st.sampled_from(["a", "a{b", "a\tb"])),
    }
    some_environment = st.none() | _value(VALUE_CHARS) | st.sampled_from(["prod{eu", "prod_eu", "prod eu", "prod\teu"])
    environment = field(near and near.environment, ENV_PATTERN_CHARS, some_environment)
    if environment is not None:
        claims["environment"] = environment
    ci_config_ref_uri = field(near and near.ci_config_ref_uri, CI_PATTERN_CHARS, st.none() | _value(VALUE_CHARS))
    if ci_config_ref_uri is not None:
        claims["ci_config_ref_uri"] = ci_config_ref_uri
    if environment is not None:  # GitLab sends these for jobs with an environment only
        claims["environment_protected"] = (
            "true" if near is not None and near.environment_protected else draw(st.sampled_from(["true", "false"]))
        )
        claims["deployment_tier"] = (
            draw(st.sampled_from(near.deployment_tiers))
            if near is not None and near.deployment_tiers and draw(st.integers(0, 5))
            else draw(st.sampled_from(["production", "staging", "other", "Production"]))
        )
    runner = near.runner_environment if near is not None else None
    claims["runner_environment"] = runner or draw(st.sampled_from(["self-hosted", "gitlab-hosted", "cloud"]))
    some_id = st.sampled_from(MAPPING_IDS) | st.sampled_from(HOSTILE_IDS) | st.text(max_size=4)
    for name in ("project_id", "namespace_id"):
        wanted = getattr(near, name) if near is not None else None
        value = wanted if wanted is not None and draw(st.integers(0, 5)) else draw(some_id)
        if name == "project_id" or draw(st.integers(0, 7)):  # GitLab always sends project_id
            claims[name] = value
    issuer = near.issuer if near is not None and draw(st.integers(0, 5)) else draw(st.sampled_from(ISSUERS))
    return roles, rules, claims, issuer


PROPERTY_EXAMPLES = property_examples()  # ROLEGATE_HYPOTHESIS_EXAMPLES (tests/properties.py)


@settings(
    max_examples=PROPERTY_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(case=cases())
def test_a_minted_token_is_admitted_by_its_role_and_by_no_other(case):
    roles, rules, claims, issuer = case
    registry = Registry(rules)
    documents = {
        role: role_policy(
            rules,
            account_id=role.account_id,
            role_name=role.name,
            mode=role.mode,
            audience=role.audience,
            tags=role.tags,
        ).document
        for role in roles
    }
    for requested in (None, *roles):
        arn = None if requested is None else f"arn:aws:iam::{requested.account_id}:role/{requested.name}"
        decision = decide(registry, issuer=issuer, claims=claims, now=NOW, role_arn=arn)
        if not decision.granted:
            continue
        token = mint(decision, claims)
        granted = decision.rule
        event("granted, tagged" if token.tags is not None else "granted, no tags")
        if token.tags is not None and "environment" not in token.tags and "environment" in claims:
            event("granted, environment claim without a tag")
        if len(roles) > 1:
            event("granted with other roles to borrow")
        if granted.project_id is not None or granted.namespace_id is not None:
            event("granted by a mapping bound on an id" + (" alone" if granted.project == "*" else ""))
        for role, document in documents.items():
            mine = (role.account_id, role.name) == (granted.account_id, granted.role_name)
            assert admitted(token, document, role.account_id) is mine, (role, decision.sub, token.tags)


@settings(
    max_examples=PROPERTY_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(case=cases())
def test_a_roles_policy_admits_exactly_the_tokens_rolegate_would_mint_for_it(case):
    """For each brokered role, a token bound to it with these claims (tags as the role has them)
    passes its policy exactly when the matcher grants the role: IAM is never looser or stricter,
    whatever the claim values (a value no tag can hold exactly is claim_not_taggable)."""
    roles, rules, claims, issuer = case
    registry = Registry(rules)
    for role in roles:
        if role.mode != "brokered":
            continue
        arn = f"arn:aws:iam::{role.account_id}:role/{role.name}"
        decision = decide(registry, issuer=issuer, claims=claims, now=NOW, role_arn=arn)
        if decision.reason == matching.SUB_TOO_LONG:
            continue  # never minted; STS would refuse the token anyway
        sub = minted.minted_sub(
            issuer,
            claims["project_path"],
            claims["ref_type"],
            claims["ref"],
            account_id=role.account_id,
            role_name=role.name,
        )
        tags = {k: v[0] for k, v in minted.principal_tags(claims, "m").items()} if role.tags else None
        document = role_policy(
            rules, account_id=role.account_id, role_name=role.name, audience=role.audience, tags=role.tags
        ).document
        event(f"{'granted' if decision.granted else decision.reason}")
        if any(r.project_id or r.namespace_id for r in rules if r.role_arn == arn):
            event(f"role with mappings bound on ids: {'granted' if decision.granted else decision.reason}")
        assert admitted(Token(sub, role.audience, tags), document, role.account_id) is decision.granted, (
            role,
            decision.reason,
            decision.detail,
        )
