"""Every validation rule of the registry (issue 2), each with a value it must refuse and one it
must accept, checked the way every write path checks them: ``full_clean()``."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from mappings.models import Account, Issuer, Mapping, Role
from tests.factories import AccountFactory, IssuerFactory, RoleFactory

pytestmark = pytest.mark.django_db


def errors(obj) -> dict[str, list[str]]:
    try:
        obj.full_clean()
    except ValidationError as exc:
        return exc.message_dict
    return {}


def issuer(**fields) -> Issuer:
    return Issuer(**{"name": "gitlab-com", "url": "https://gitlab.com", "audiences": ["https://rg.example"], **fields})


def account(**fields) -> Account:
    return Account(**{"name": "prod", "account_id": "123456789012", **fields})


def role(**fields) -> Role:
    if "account" not in fields:
        fields["account"] = AccountFactory(name="prod", account_id="123456789012")
    return Role(**{"name": "deploy-web", **fields})


def mapping(**fields) -> Mapping:
    if "issuer" not in fields:
        fields["issuer"] = IssuerFactory()
    if "role" not in fields:
        fields["role"] = RoleFactory()
    return Mapping(**{"name": "web-main", "project": "platform/web", **fields})


@pytest.mark.parametrize("value", ["123456789012", "000000000001"])
def test_account_id_accepts_12_digits(value):
    assert errors(account(account_id=value)) == {}


@pytest.mark.parametrize(
    "value", ["12345678901", "1234567890123", "12345678901a", " 23456789012", "１２３４５６７８９０１２"]
)
def test_account_id_must_be_12_digits(value):
    assert "12 digits" in errors(account(account_id=value))["account_id"][0]


@pytest.mark.parametrize("value", ["deploy-web", "a", "Deploy_Web+=,.@-1", "x" * 64])
def test_role_name_accepts_what_iam_accepts(value):
    assert errors(role(name=value)) == {}


@pytest.mark.parametrize("value", ["deploy web", "team/deploy", "x" * 65, "déploy", "deploy:web"])
def test_role_name_refuses_what_iam_refuses(value):
    assert "name" in errors(role(name=value))


def test_role_name_is_required():
    assert "name" in errors(role(name=""))


@pytest.mark.parametrize(("value", "ok"), [(899, False), (900, True), (43200, True), (43201, False)])
def test_session_duration_is_900_to_43200(value, ok):
    assert ("max_session_seconds" not in errors(role(max_session_seconds=value))) is ok


@pytest.mark.parametrize(("value", "ok"), [(2047, False), (2048, True), (4096, True), (4097, False)])
def test_trust_policy_quota_is_2048_to_4096(value, ok):
    assert ("trust_policy_limit" not in errors(account(trust_policy_limit=value))) is ok


def test_account_mode_is_brokered_or_direct():
    assert errors(account(mode="direct")) == {}
    assert "mode" in errors(account(mode="hybrid"))


@pytest.mark.parametrize("value", ["", " sts.amazonaws.com", "sts.amazonaws.com "])
def test_account_audience_must_be_a_clean_value(value):
    assert "audience" in errors(account(audience=value))


@pytest.mark.parametrize(
    "value", [None, "arn:aws:iam::123456789012:role/rolegate-manager", "arn:aws:iam::123456789012:role/ops/manager"]
)
def test_manager_role_arn_accepts_role_arns(value):
    assert errors(account(manager_role_arn=value)) == {}


@pytest.mark.parametrize(
    "value",
    ["rolegate-manager", "arn:aws:iam::12345:role/x", "arn:aws:iam::123456789012:user/x", "arn:aws:s3:::bucket"],
)
def test_manager_role_arn_must_be_an_iam_role_arn(value):
    assert "manager_role_arn" in errors(account(manager_role_arn=value))


@pytest.mark.parametrize("value", ["platform/web", "platform/*", "v?.*", "*", "group/sub-group/project_1.x"])
def test_patterns_accept_stringlike_patterns(value):
    assert errors(mapping(project=value, ref=value, environment=value)) == {}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "must not be empty"),
        ("platform/$web", "policy variable"),
        ("platform:web", "':'"),
        (" platform/web", "whitespace"),
        ("platform web", "whitespace"),
        ("platform/\x07", "control character"),
        ("platform/**", "'**'"),
        ("p" * 256, "at most 255"),
    ],
)
@pytest.mark.parametrize("field", ["project", "ref"])
def test_patterns_refuse_empty_and_nonsensical_values(field, value, message):
    found = errors(mapping(**{field: value})).get(field, [])
    assert any(message in text for text in found), found


@pytest.mark.parametrize(
    ("value", "message"), [("", "empty environment"), ("prod env", "whitespace"), ("$x", "policy")]
)
def test_environment_pattern_is_checked_and_may_not_be_empty(value, message):
    found = errors(mapping(environment=value)).get("environment", [])
    assert any(message in text for text in found), found


def test_environment_may_be_unset():
    assert errors(mapping(environment=None)) == {}


@pytest.mark.parametrize("value", [[], ["push"], ["merge_request_event", "web", "schedule"]])
def test_pipeline_sources_accept_gitlabs_values(value):
    assert errors(mapping(pipeline_sources=value)) == {}


@pytest.mark.parametrize(
    ("value", "message"), [(["cron"], "Unknown pipeline source"), (["push", "push"], "repeat"), ("push", "list")]
)
def test_pipeline_sources_refuse_unknown_values(value, message):
    assert message in errors(mapping(pipeline_sources=value))["pipeline_sources"][0]


def test_ref_type_is_branch_tag_or_any():
    assert errors(mapping(ref_type="tag")) == {}
    assert "ref_type" in errors(mapping(ref_type="commit"))


@override_settings(ROLEGATE_ALLOW_HTTP=False)
@pytest.mark.parametrize("field", ["url", "jwks_url"])
def test_issuer_urls_must_be_https(field):
    assert "https" in errors(issuer(**{field: "http://gitlab.example.com"}))[field][0]
    assert field not in errors(issuer(**{field: "https://gitlab.example.com"}))


@override_settings(ROLEGATE_ALLOW_HTTP=True)
def test_http_issuer_urls_need_rolegate_allow_http():
    assert errors(issuer(url="http://127.0.0.1:8080", jwks_url="http://127.0.0.1:8080/oauth/discovery/keys")) == {}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("https://gitlab.com/", "trailing"),
        ("gitlab.com", "absolute"),
        ("https://gitlab.com?x=1", "query"),
        ("https://user:pw@gitlab.com", "credentials"),
        ("ftp://gitlab.com", "absolute"),
    ],
)
def test_issuer_url_must_equal_an_iss_claim(value, message):
    assert message in errors(issuer(url=value))["url"][0]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "at least one audience"),
        ([""], "non-empty"),
        ([" x"], "surrounding"),
        (["a", "a"], "repeat"),
        ("aud", "at least one"),
    ],
)
def test_audiences_are_a_non_empty_list_of_clean_strings(value, message):
    assert message in errors(issuer(audiences=value))["audiences"][0]


@pytest.mark.parametrize("value", ["gitlab com", "gitlab/com", "", "gitlab.com"])
def test_names_are_slugs(value):
    assert "name" in errors(issuer(name=value))
    assert "name" in errors(account(name=value))
    assert "name" in errors(mapping(name=value))


def test_slugs_and_account_ids_are_unique():
    existing = IssuerFactory(name="gitlab-com", url="https://gitlab.com")
    assert "name" in errors(issuer(url="https://other.example"))
    assert "url" in errors(issuer(name="other"))
    prod = AccountFactory(name="prod", account_id="123456789012")
    assert "name" in errors(account(account_id="210987654321"))
    assert "account_id" in errors(account(name="other"))
    RoleFactory(account=prod, name="deploy-web")
    assert "__all__" in errors(role(account=prod, name="deploy-web"))
    staging = AccountFactory(name="staging", account_id="210987654321")
    assert errors(role(account=staging, name="deploy-web")) == {}
    first = mapping(issuer=existing)
    first.save()
    assert "name" in errors(mapping(issuer=existing))


@pytest.mark.django_db
def test_a_conditioned_mapping_needs_session_tags_on_a_brokered_role():
    from django.core.exceptions import ValidationError

    from mappings import services
    from tests.factories import AccountFactory, IssuerFactory, RoleFactory

    role = RoleFactory(account=AccountFactory(name="tagless", mode="brokered"), session_tags=False)
    with pytest.raises(ValidationError, match="does not use session tags"):
        services.mapping_create(
            actor="test", name="guarded", issuer=IssuerFactory(), role=role, project="platform/web", protected=True
        )
    services.mapping_create(actor="test", name="plain", issuer=IssuerFactory(), role=role, project="platform/web")
    direct = RoleFactory(account=AccountFactory(name="gitlab-direct", mode="direct"), session_tags=False)
    services.mapping_create(  # direct mode: IAM sees GitLab's own token; warned about, not refused
        actor="test", name="direct-guarded", issuer=IssuerFactory(), role=direct, project="platform/web", protected=True
    )


@pytest.mark.django_db
@pytest.mark.parametrize("pattern", ["prod{eu}", "prod#*", "prod!?", "a~b", "stage,prod", "x\u00a7"])
def test_an_environment_pattern_no_session_tag_can_hold_is_refused_on_a_role_with_tags(pattern):
    """IAM compares it with the environment tag, whose values hold only letters, digits, spaces
    and _ . : / = + - @: it was written as a lossy stand-in ('prod{eu}' became 'prod_eu_')."""
    from django.core.exceptions import ValidationError

    from mappings import services
    from tests.factories import AccountFactory, IssuerFactory, RoleFactory

    role = RoleFactory(account=AccountFactory(name="tagged", mode="brokered"), session_tags=True)
    with pytest.raises(ValidationError) as caught:
        services.mapping_create(
            actor="test", name="env", issuer=IssuerFactory(), role=role, project="platform/web", environment=pattern
        )
    [message] = caught.value.message_dict["environment"]
    assert "no AWS session tag value can" in message
    # Letters of any script, digits, the tag symbols and wildcards are fine.
    services.mapping_create(
        actor="test",
        name="ok",
        issuer=IssuerFactory(),
        role=role,
        project="platform/web",
        environment="prod-ü/1.a_b@c=d+?*",
    )
    # Direct mode: IAM never sees the environment (it is a warning), so the pattern is allowed.
    direct = RoleFactory(account=AccountFactory(name="gitlab-direct", mode="direct"), session_tags=True)
    services.mapping_create(
        actor="test",
        name="direct-env",
        issuer=IssuerFactory(),
        role=direct,
        project="platform/web",
        environment=pattern,
    )
