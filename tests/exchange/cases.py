"""Decision cases shared by the exchange tests and the explain API's tests.

Importable without fixtures: ``build_registry(issuer_url)`` creates the registry below through
``mappings.services`` (call it inside a test with database access), and ``CASES`` lists
``(name, claims, role_arn or None, expected_reason)``: the exchange, given a valid token from
issuer ``ISSUER_NAME`` with ``claims``, must decide ``expected_reason`` (a reason code of
``exchange.reasons``; ``granted`` when it grants). Claims come from the shared personas with a
few overrides.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from tests.conftest import load_claim_examples
from tests.exchange.gitlab_stand_in import with_claims

ISSUER_NAME = "gitlab-test"
AUDIENCE = "https://rolegate.example.com"
PROD = "111111111111"
LEGACY = "222222222222"
STS_AUDIENCE = "sts.amazonaws.com"


def arn(account_id: str, name: str) -> str:
    return f"arn:aws:iam::{account_id}:role/{name}"


DEPLOY_WEB = arn(PROD, "deploy-web")
DEPLOY_API = arn(PROD, "deploy-api")
RELEASE_WEB = arn(PROD, "release-web")
READONLY = arn(PROD, "readonly")
LEGACY_DEPLOY = arn(LEGACY, "deploy-old")
WEB_BOUND = arn(PROD, "deploy-web-bound")
RELEASE_BY_ID = arn(PROD, "release-by-id")
NOT_MANAGED = arn("333333333333", "deploy-web")

ACCOUNTS: list[dict[str, object]] = [
    {"name": "prod", "account_id": PROD, "mode": "brokered", "audience": STS_AUDIENCE},
    {"name": "legacy", "account_id": LEGACY, "mode": "direct", "audience": STS_AUDIENCE},
]
ROLES: list[dict[str, object]] = [
    {"account": "prod", "name": "deploy-web", "max_session_seconds": 3600, "session_tags": True},
    {"account": "prod", "name": "deploy-api", "max_session_seconds": 3600, "session_tags": True},
    # Without session tags: its mapping has no condition IAM could check only through tags.
    {"account": "prod", "name": "release-web", "max_session_seconds": 3600, "session_tags": False},
    {"account": "prod", "name": "readonly", "max_session_seconds": 7200, "session_tags": True},
    {"account": "legacy", "name": "deploy-old", "max_session_seconds": 3600, "session_tags": True},
    # Bound on GitLab's ids, which it never reuses (IAM checks them through session tags).
    {"account": "prod", "name": "deploy-web-bound", "max_session_seconds": 3600, "session_tags": True},
    {"account": "prod", "name": "release-by-id", "max_session_seconds": 3600, "session_tags": True},
]
MAPPINGS: list[dict[str, object]] = [
    # The web team's protected main branch deploys the website.
    {
        "name": "web-main-deploy",
        "role": "prod/deploy-web",
        "project": "platform/web",
        "ref": "main",
        "ref_type": "branch",
        "protected": True,
    },
    # The API team's production environment, from pushes and manual runs only.
    {
        "name": "api-production",
        "role": "prod/deploy-api",
        "project": "platform/api",
        "ref": "*",
        "protected": True,
        "environment": "production",
        "pipeline_sources": ["push", "web"],
        # The project's own reviewed pipeline, a protected production-tier environment, its own runners.
        "ci_config_ref_uri": "gitlab.example.com/platform/api//.gitlab-ci.yml@refs/heads/*",
        "environment_protected": True,
        "deployment_tiers": ["production", "staging"],
        "runner_environment": "self-hosted",
    },
    # Release tags of the website.
    {"name": "web-release", "role": "prod/release-web", "project": "platform/web", "ref": "v*", "ref_type": "tag"},
    # Every protected ref of every platform project may read.
    {"name": "platform-readonly", "role": "prod/readonly", "project": "platform/*", "protected": True},
    # A direct-mode account: GitLab tokens go to STS directly, never through Rolegate.
    {"name": "legacy-web", "role": "legacy/deploy-old", "project": "platform/web", "ref": "main"},
    # platform/web's main branch, but only while platform/web is project 20 in namespace 72: a
    # project re-created at the path, or a namespace reclaimed by someone else, has new ids.
    {
        "name": "web-main-bound",
        "role": "prod/deploy-web-bound",
        "project": "platform/web",
        "project_id": "20",
        "namespace_id": "72",
        "ref": "main",
        "ref_type": "branch",
        "protected": True,
    },
    # Protected release tags of project 20 wherever it lives (bound by id alone: any path).
    {
        "name": "release-project-20",
        "role": "prod/release-by-id",
        "project": "*",
        "project_id": "20",
        "ref": "v*",
        "ref_type": "tag",
        "protected": True,
    },
    # Expired and disabled mappings grant nothing.
    {
        "name": "web-main-api-expired",
        "role": "prod/deploy-api",
        "project": "platform/web",
        "ref": "main",
        "expires_at": datetime(2020, 1, 1, tzinfo=UTC),
    },
    {
        "name": "feature-disabled",
        "role": "prod/deploy-web",
        "project": "platform/web",
        "ref": "feature/*",
        "enabled": False,
    },
]


def build_registry(issuer_url: str, *, actor: str = "tests"):
    """Create the issuer, accounts, roles and mappings above; returns the issuer."""
    from mappings import services
    from mappings.models import Account, Role

    with services.registry_batch():  # checked once, at the end, as `apply` checks its plan
        issuer = services.issuer_create(actor=actor, name=ISSUER_NAME, url=issuer_url, audiences=[AUDIENCE])
        accounts = {spec["name"]: services.account_create(actor=actor, **spec) for spec in ACCOUNTS}
        roles: dict[str, Role] = {}
        for spec in ROLES:
            role_fields = dict(spec)
            account: Account = accounts[str(role_fields.pop("account"))]
            roles[f"{account.name}/{spec['name']}"] = services.role_create(actor=actor, account=account, **role_fields)
        for spec in MAPPINGS:
            mapping_fields = dict(spec)
            role = roles[str(mapping_fields.pop("role"))]
            services.mapping_create(actor=actor, issuer=issuer, role=role, **mapping_fields)
    return issuer


_EXAMPLES = load_claim_examples()


def claims(persona: str, **overrides) -> dict:
    """A persona's GitLab claims with ``overrides`` (a value of ``None`` removes the claim)."""
    return with_claims(copy.deepcopy(_EXAMPLES[persona]), overrides)


WEB_MAIN = "protected_main_push"  # the web team's protected main-branch push job
API_PROD = "production_deploy_job"  # the API team's production deploy job
RELEASE = "release_tag"  # a release-tag pipeline of platform/web
FEATURE_MR = "merge_request_feature_branch"  # mallory's merge-request job on an unprotected branch

CASES: list[tuple[str, dict, str | None, str]] = [
    ("web main deploys the website", claims(WEB_MAIN), DEPLOY_WEB, "granted"),
    ("web main may read", claims(WEB_MAIN), READONLY, "granted"),
    ("web main without audience matches several roles", claims(WEB_MAIN), None, "ambiguous_role"),
    ("web main to a direct-mode account", claims(WEB_MAIN), LEGACY_DEPLOY, "direct_mode_account"),
    ("expired mapping grants nothing", claims(WEB_MAIN), DEPLOY_API, "no_matching_mapping"),
    ("unprotected main is refused", claims(WEB_MAIN, ref_protected="false"), DEPLOY_WEB, "no_matching_mapping"),
    ("a tag named main is not the branch", claims(WEB_MAIN, ref_type="tag"), DEPLOY_WEB, "no_matching_mapping"),
    (
        "project match is case-sensitive",
        claims(WEB_MAIN, project_path="Platform/web"),
        DEPLOY_WEB,
        "no_matching_mapping",
    ),
    ("a role Rolegate does not manage", claims(WEB_MAIN), NOT_MANAGED, "no_matching_mapping"),
    # The minted sub (issuer name + project path + ref) would pass AWS's 255 characters.
    (
        "a sub longer than 255 characters",
        claims(WEB_MAIN, project_path="platform/" + "a" * 230),
        READONLY,
        "sub_too_long",
    ),
    ("api production deploys the api", claims(API_PROD), DEPLOY_API, "granted"),
    (
        "api production from a schedule is refused",
        claims(API_PROD, pipeline_source="schedule"),
        DEPLOY_API,
        "no_matching_mapping",
    ),
    ("api staging environment is refused", claims(API_PROD, environment="staging"), DEPLOY_API, "no_matching_mapping"),
    ("api job without environment is refused", claims(API_PROD, environment=None), DEPLOY_API, "no_matching_mapping"),
    (
        "api production from another pipeline definition is refused",
        claims(API_PROD, ci_config_ref_uri="gitlab.example.com/mallory/ci//evil.yml@refs/heads/main"),
        DEPLOY_API,
        "no_matching_mapping",
    ),
    (
        "api production without a pipeline definition is refused",
        claims(API_PROD, ci_config_ref_uri=None),
        DEPLOY_API,
        "no_matching_mapping",
    ),
    (
        "api production in an unprotected environment is refused",
        claims(API_PROD, environment_protected="false"),
        DEPLOY_API,
        "no_matching_mapping",
    ),
    (
        "api production on the development tier is refused",
        claims(API_PROD, deployment_tier="development"),
        DEPLOY_API,
        "no_matching_mapping",
    ),
    ("api production on the staging tier", claims(API_PROD, deployment_tier="staging"), DEPLOY_API, "granted"),
    (
        "api production on a GitLab-hosted runner is refused",
        claims(API_PROD, runner_environment="gitlab-hosted"),
        DEPLOY_API,
        "no_matching_mapping",
    ),
    (
        "api production whose pipeline definition no tag can carry",
        claims(API_PROD, ci_config_ref_uri="gitlab.example.com/platform/api//.gitlab-ci.yml@refs/heads/ma{in"),
        DEPLOY_API,
        "claim_not_taggable",
    ),
    ("api in a subgroup may read", claims(API_PROD, project_path="platform/team/api"), READONLY, "granted"),
    ("release tag releases", claims(RELEASE), RELEASE_WEB, "granted"),
    (
        "a branch named like a tag does not release",
        claims(RELEASE, ref_type="branch"),
        RELEASE_WEB,
        "no_matching_mapping",
    ),
    ("feature MR cannot deploy (disabled mapping)", claims(FEATURE_MR), DEPLOY_WEB, "no_matching_mapping"),
    ("feature MR cannot read (unprotected)", claims(FEATURE_MR), READONLY, "no_matching_mapping"),
    ("feature MR without audience", claims(FEATURE_MR), None, "no_matching_mapping"),
    (
        "another group matches nothing",
        claims(WEB_MAIN, project_path="other/web", namespace_path="other"),
        None,
        "no_matching_mapping",
    ),
    ("api production without audience matches two roles", claims(API_PROD), None, "ambiguous_role"),
    ("release tag without audience", claims(RELEASE), None, "ambiguous_role"),
    ("unprotected tag without audience gets the release role", claims(RELEASE, ref_protected="false"), None, "granted"),
    # Bound on ids.
    ("web main, project 20 in namespace 72, gets the id-bound role", claims(WEB_MAIN), WEB_BOUND, "granted"),
    (
        "platform/web re-created as project 99 is refused the id-bound role",
        claims(WEB_MAIN, project_id="99"),
        WEB_BOUND,
        "no_matching_mapping",
    ),
    (
        "a reclaimed namespace (new namespace id) is refused the id-bound role",
        claims(WEB_MAIN, namespace_id="73"),
        WEB_BOUND,
        "no_matching_mapping",
    ),
    (
        "a token without namespace_id is refused the namespace-bound role",
        claims(WEB_MAIN, namespace_id=None),
        WEB_BOUND,
        "no_matching_mapping",
    ),
    (
        "a token without namespace_id still deploys the website",
        claims(WEB_MAIN, namespace_id=None),
        DEPLOY_WEB,
        "granted",
    ),
    (
        "project 20 renamed still gets the role bound by id alone",
        claims(RELEASE, project_path="platform/website", namespace_path="platform"),
        RELEASE_BY_ID,
        "granted",
    ),
    (
        "project 20 moved to another namespace still gets the role bound by id alone",
        claims(RELEASE, project_path="elsewhere/web", namespace_path="elsewhere", namespace_id="90"),
        RELEASE_BY_ID,
        "granted",
    ),
    (
        "a release tag of another project never gets the role bound by id alone",
        claims(RELEASE, project_id="21"),
        RELEASE_BY_ID,
        "no_matching_mapping",
    ),
    (
        "an unprotected tag of project 20 is refused the role bound by id alone",
        claims(RELEASE, ref_protected="false"),
        RELEASE_BY_ID,
        "no_matching_mapping",
    ),
]
