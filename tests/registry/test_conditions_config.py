"""The new mapping conditions and the account's source_identity in configuration files: the keys,
their validation by path, and the apply/export round trip."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
import yaml
from django.core.management import CommandError, call_command

from mappings import config
from mappings.models import Account, Mapping
from mappings.selectors import registry_rules
from tests.registry.conftest import as_yaml

pytestmark = pytest.mark.django_db

CONDITIONS = {
    "ci_config_ref_uri": "gitlab.example.com/platform/pipelines//deploy.yml@refs/heads/main",
    "environment_protected": True,
    "deployment_tiers": ["production", "staging"],
    "runner_environment": "self-hosted",
}


def apply(tmp_path, data: dict | str, name: str = "rolegate.yaml") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else as_yaml(data))
    out = io.StringIO()
    call_command("apply", str(path), stdout=out, stderr=io.StringIO())
    return out.getvalue()


def refused(tmp_path, data: dict) -> list[str]:
    path = tmp_path / "bad.yaml"
    path.write_text(as_yaml(data))
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("apply", str(path), stdout=io.StringIO(), stderr=err)
    return err.getvalue().splitlines()


def assert_refused_by_path(tmp_path, data: dict, key: str, value: object, message: str) -> None:
    """``apply`` refuses the file whose mapping has ``key: value``, naming ``mappings[0].<key>``
    with ``message``, and writes nothing."""
    data["mappings"][0][key] = value
    lines = refused(tmp_path, data)
    assert any(line.startswith(f"mappings[0].{key}: ") and message in line for line in lines), lines
    assert Mapping.objects.count() == 0


def assert_read_back(exported: str) -> None:
    """The exported file, read as a proposed configuration, gives the registry's rules (its one
    mapping numbered 1, as a file numbers them)."""
    assert config.rules_from_document(exported) == [replace(rule, id=1) for rule in registry_rules()]


def test_conditions_apply_export_and_re_apply_as_a_no_op(tmp_path, minimal):
    minimal["accounts"][0]["source_identity"] = True
    minimal["mappings"][0].update(CONDITIONS)
    apply(tmp_path, minimal)
    mapping = Mapping.objects.get()
    assert (mapping.ci_config_ref_uri, mapping.environment_protected) == (CONDITIONS["ci_config_ref_uri"], True)
    assert (mapping.deployment_tiers, mapping.runner_environment) == (["production", "staging"], "self-hosted")
    assert Account.objects.get().source_identity is True
    [rule] = registry_rules()
    assert rule.deployment_tiers == ("production", "staging") and rule.account_source_identity

    exported = config.export_document()
    data = yaml.safe_load(exported)
    assert {key: data["mappings"][0][key] for key in CONDITIONS} == CONDITIONS
    assert data["accounts"][0]["source_identity"] is True
    assert apply(tmp_path, exported, "exported.yaml").startswith("No changes.")
    assert_read_back(exported)


def test_defaults_export_and_round_trip(tmp_path, minimal):
    apply(tmp_path, minimal)
    data = yaml.safe_load(config.export_document())
    assert {key: data["mappings"][0][key] for key in CONDITIONS} == {
        "ci_config_ref_uri": None,
        "environment_protected": False,
        "deployment_tiers": [],
        "runner_environment": None,
    }
    assert data["accounts"][0]["source_identity"] is False


def test_one_deployment_tier_may_be_written_alone(tmp_path, minimal):
    minimal["mappings"][0]["deployment_tiers"] = "production"
    apply(tmp_path, minimal)
    assert Mapping.objects.get().deployment_tiers == ["production"]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("ci_config_ref_uri", "", "must not be an empty string"),
        ("ci_config_ref_uri", True, "must be a string"),
        ("ci_config_ref_uri", "gitlab.example.com/p//x.yml@refs/heads/ma{in", "no AWS session tag value can"),
        ("environment_protected", "true", "must be true or false"),
        ("deployment_tiers", ["prod"], "Unknown deployment tier(s) 'prod'"),
        ("deployment_tiers", ["production", "production"], "must not repeat"),
        ("deployment_tiers", [1], "must be a string or a list of strings"),
        ("runner_environment", "cloud", "is not a valid choice"),
        ("runner_environment", 1, "must be a string"),
    ],
)
def test_each_condition_is_validated_by_path(tmp_path, minimal, key, value, message):
    assert_refused_by_path(tmp_path, minimal, key, value, message)


def test_conditions_need_session_tags_on_a_brokered_role(tmp_path, minimal):
    minimal["roles"][0]["session_tags"] = False
    minimal["mappings"][0]["runner_environment"] = "self-hosted"
    lines = refused(tmp_path, minimal)
    assert any("does not use session tags" in line and "runner_environment" in line for line in lines), lines


def test_source_identity_is_refused_on_a_direct_account(tmp_path, minimal):
    minimal["accounts"][0].update(mode="direct", source_identity=True)
    lines = refused(tmp_path, minimal)
    assert any(line.startswith("accounts[0].source_identity: In direct mode") for line in lines), lines


def test_source_identity_must_be_a_boolean(tmp_path, minimal):
    minimal["accounts"][0]["source_identity"] = "yes"
    lines = refused(tmp_path, minimal)
    assert "accounts[0].source_identity: must be true or false" in lines
