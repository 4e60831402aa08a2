"""Parsing and validating a configuration file (docs/configuration.md) (no database: these tests have no db mark, so
any query would fail them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from mappings.config import ConfigError, parse_document, rules_from_document
from mappings.matching import Registry, decide
from tests.registry.conftest import as_yaml


def errors_of(text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        parse_document(text)
    return dict(caught.value.errors)


def test_minimal_document_gets_the_contract_defaults(minimal):
    document = parse_document(as_yaml(minimal))
    assert document.issuers["gitlab-example"].values["jwks_url"] is None
    account = document.accounts["prod"].values
    assert (account["mode"], account["audience"], account["manager_role_arn"], account["trust_policy_limit"]) == (
        "brokered",
        "sts.amazonaws.com",
        None,
        2048,
    )
    role = document.roles["prod/deploy-web"].values
    assert (role["max_session_seconds"], role["session_tags"]) == (3600, True)
    mapping = document.mappings["web-main"].values
    assert mapping == {
        "name": "web-main",
        "issuer": "gitlab-example",
        "role": "prod/deploy-web",
        "project": "platform/web",
        "project_id": None,
        "namespace_id": None,
        "ref": "main",
        "ref_type": "any",
        "protected": False,
        "environment": None,
        "pipeline_sources": [],
        "ci_config_ref_uri": None,
        "environment_protected": False,
        "deployment_tiers": [],
        "runner_environment": None,
        "pin_identity": None,
        "expires_at": None,
        "enabled": True,
    }
    minimal["mappings"][0].pop("ref")
    assert parse_document(as_yaml(minimal)).mappings["web-main"].values["ref"] == "*"


def test_empty_file_is_an_empty_configuration():
    document = parse_document("")
    assert not document.issuers and not document.mappings


@pytest.mark.parametrize(
    "written",
    ["2027-01-01T00:00:00Z", "'2027-01-01T00:00:00Z'", "'2027-01-01T02:00:00+02:00'", "2027-01-01 00:00:00+00:00"],
)
def test_expires_at_is_a_yaml_timestamp_or_an_iso_string(minimal, written):
    text = as_yaml(minimal).replace("ref: main", f"ref: main\n  expires_at: {written}")
    expires_at = parse_document(text).mappings["web-main"].values["expires_at"]
    assert expires_at == datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2027-01-01T00:00:00", "give a timezone"),
        ("next tuesday", "not an ISO 8601 timestamp"),
        (12, "must be a timestamp"),
    ],
)
def test_expires_at_must_be_an_unambiguous_timestamp(minimal, value, message):
    minimal["mappings"][0]["expires_at"] = value
    assert message in errors_of(as_yaml(minimal))["mappings[0].expires_at"]


def test_a_date_without_time_is_refused(minimal):
    text = as_yaml(minimal).replace("ref: main", "ref: main\n  expires_at: 2027-01-01")
    assert "mappings[0].expires_at" in errors_of(text)


def test_every_error_is_reported_with_its_path(minimal):
    minimal["issuers"][0]["url"] = "https://gitlab.example.com/"
    minimal["accounts"][0]["account_id"] = "12345"
    minimal["accounts"][0]["colour"] = "blue"
    minimal["roles"][0]["max_session_seconds"] = 60
    minimal["mappings"].append({"name": "other", "issuer": "gitlab-example", "role": "prod/deploy-web"})
    minimal["mappings"].append(
        {"name": "x", "issuer": "gitlab-example", "role": "prod/deploy-web", "project": "a/*", "ref": "release:1"}
    )
    errors = errors_of(as_yaml(minimal))
    assert set(errors) == {
        "issuers[0].url",
        "accounts[0].account_id",
        "accounts[0].colour",
        "roles[0].max_session_seconds",
        "mappings[1].project",
        "mappings[2].ref",
    }
    assert "trailing '/'" in errors["issuers[0].url"]
    assert "12 digits" in errors["accounts[0].account_id"]
    assert errors["accounts[0].colour"].startswith("unknown key")
    assert errors["mappings[1].project"] == "is required (or give project_id or namespace_id)"
    assert "':'" in errors["mappings[2].ref"]
    assert "mappings[3].ref: " in str(ConfigError([("mappings[3].ref", "x")]))


@pytest.mark.parametrize("section", ["issuers", "accounts", "roles", "mappings"])
def test_unknown_keys_are_errors_in_every_section(minimal, section):
    minimal[section][0]["typo"] = 1
    assert errors_of(as_yaml(minimal))[f"{section}[0].typo"].startswith("unknown key")


def test_unknown_top_level_key_is_an_error(minimal):
    minimal["mapping"] = []
    assert "mapping" in errors_of(as_yaml(minimal))


def test_a_section_must_be_a_list(minimal):
    minimal["roles"] = {"account": "prod"}
    assert errors_of(as_yaml(minimal))["roles"] == "must be a list"


def test_a_key_given_twice_is_an_error():
    errors = errors_of("issuers:\n  - name: a\n    name: b\n")
    assert any("appears twice" in message for message in errors.values())


def test_invalid_yaml_names_the_line():
    errors = errors_of("issuers:\n  - name: [unclosed\n")
    assert any(path.startswith("line ") for path in errors)


def test_yaml_booleans_and_numbers_where_strings_belong_say_to_quote(minimal):
    minimal["mappings"][0]["ref"] = True
    minimal["accounts"][0]["account_id"] = 123456789012
    errors = errors_of(as_yaml(minimal))
    assert "quote it" in errors["mappings[0].ref"]
    assert "quote it" in errors["accounts[0].account_id"]


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("roles", "session_tags", "yes please"),
        ("mappings", "protected", "true"),
        ("mappings", "enabled", 1),
        ("roles", "max_session_seconds", "3600"),
        ("accounts", "trust_policy_limit", True),
        ("mappings", "pipeline_sources", "push"),
        ("issuers", "audiences", [1]),
        ("mappings", "environment", ""),
        ("issuers", "jwks_url", ""),
    ],
)
def test_wrong_types_are_errors(minimal, section, key, value):
    minimal[section][0][key] = value
    assert f"{section}[0].{key}" in errors_of(as_yaml(minimal))


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("issuers", "name"),
        ("issuers", "url"),
        ("issuers", "audiences"),
        ("accounts", "account_id"),
        ("roles", "account"),
    ],
)
def test_required_keys(minimal, section, key):
    del minimal[section][0][key]
    assert errors_of(as_yaml(minimal))[f"{section}[0].{key}"] == "is required"


def test_duplicate_slugs_are_errors(minimal):
    minimal["issuers"].append(dict(minimal["issuers"][0], url="https://gitlab.com"))
    minimal["accounts"].append(dict(minimal["accounts"][0], account_id="210987654321"))
    minimal["roles"].append(dict(minimal["roles"][0]))
    minimal["mappings"].append(dict(minimal["mappings"][0]))
    errors = errors_of(as_yaml(minimal))
    assert errors["issuers[1].name"] == "'gitlab-example' is already defined at issuers[0]"
    assert errors["accounts[1].name"] == "'prod' is already defined at accounts[0]"
    assert errors["roles[1].name"] == "'prod/deploy-web' is already defined at roles[0]"
    assert errors["mappings[1].name"] == "'web-main' is already defined at mappings[0]"


def test_same_role_name_in_two_accounts_is_fine(minimal):
    minimal["accounts"].append({"name": "staging", "account_id": "210987654321"})
    minimal["roles"].append({"account": "staging", "name": "deploy-web"})
    assert set(parse_document(as_yaml(minimal)).roles) == {"prod/deploy-web", "staging/deploy-web"}


def test_duplicate_account_ids_and_issuer_urls_are_errors(minimal):
    minimal["issuers"].append(dict(minimal["issuers"][0], name="again"))
    minimal["accounts"].append(dict(minimal["accounts"][0], name="again"))
    errors = errors_of(as_yaml(minimal))
    assert "issuers[0]" in errors["issuers[1].url"]
    assert "accounts[0]" in errors["accounts[1].account_id"]


def test_references_must_resolve_in_the_file(minimal):
    minimal["roles"].append({"account": "nope", "name": "x"})
    minimal["mappings"][0]["issuer"] = "gitlab-com"
    minimal["mappings"].append(dict(minimal["mappings"][0], name="b", issuer="gitlab-example", role="prod/missing"))
    minimal["mappings"].append(dict(minimal["mappings"][0], name="c", issuer="gitlab-example", role="deploy-web"))
    errors = errors_of(as_yaml(minimal))
    assert errors == {
        "roles[1].account": "no account named 'nope' in this file",
        "mappings[0].issuer": "no issuer named 'gitlab-com' in this file",
        "mappings[1].role": "no role 'prod/missing' in this file",
        "mappings[2].role": "'deploy-web' must be <account>/<role name>, e.g. prod/deploy-web",
    }


def test_a_reference_to_an_invalid_object_is_reported_once(minimal):
    minimal["roles"][0]["max_session_seconds"] = 1
    assert list(errors_of(as_yaml(minimal))) == ["roles[0].max_session_seconds"]


def test_issuer_urls_must_be_https_unless_allowed(minimal):
    minimal["issuers"][0]["url"] = "http://gitlab.example.com"
    with override_settings(ROLEGATE_ALLOW_HTTP=False):
        assert "https" in errors_of(as_yaml(minimal))["issuers[0].url"]
    with override_settings(ROLEGATE_ALLOW_HTTP=True):
        parse_document(as_yaml(minimal))


NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_rules_from_document_decides_like_the_registry(minimal, web_main_claims, feature_mr_claims):
    minimal["mappings"][0].update(ref_type="branch", protected=True, pipeline_sources=["push"])
    minimal["mappings"].append(
        dict(
            minimal["mappings"][0],
            name="expired",
            ref="*",
            protected=False,
            expires_at=(NOW - timedelta(days=1)).isoformat(),
        )
    )
    rules = rules_from_document(as_yaml(minimal))
    assert [(rule.id, rule.name) for rule in rules] == [(1, "web-main"), (2, "expired")]
    web = rules[0]
    assert web.role_arn == "arn:aws:iam::123456789012:role/deploy-web"
    assert (web.account_name, web.account_mode, web.account_audience) == ("prod", "brokered", "sts.amazonaws.com")
    assert (web.ref_type, web.protected, web.pipeline_sources, web.environment) == ("branch", True, ("push",), None)
    registry = Registry(rules)
    assert decide(registry, issuer="gitlab-example", claims=web_main_claims, now=NOW).rule.name == "web-main"
    assert not decide(registry, issuer="gitlab-example", claims=feature_mr_claims, now=NOW).granted


def test_rules_from_document_raises_config_error_with_paths(minimal):
    minimal["mappings"][0]["ref"] = ""
    with pytest.raises(ConfigError) as caught:
        rules_from_document(as_yaml(minimal))
    assert caught.value.errors == [("mappings[0].ref", "The pattern must not be empty; use '*' to match anything.")]


def test_the_demo_configuration_is_valid():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "demo" / "rolegate.yaml").read_text()
    rules = rules_from_document(text)
    names = {rule.name for rule in rules}
    assert len(rules) >= 8
    assert {"web-main-deploy", "api-production-deploy"} <= names
    assert any(not rule.enabled for rule in rules)
    assert any(rule.expires_at and rule.expires_at < NOW for rule in rules)
    assert any(rule.account_mode == "direct" for rule in rules)
    assert {rule.issuer for rule in rules} == {"gitlab-example", "gitlab-com"}
