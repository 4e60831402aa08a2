"""Guardrails per account, refused on every write path: apply (and its dry run), the services, the admin."""

from __future__ import annotations

import io

import pytest
import yaml
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from mappings import guardrails, patterns, services
from mappings.config import export_document
from mappings.models import Account, Mapping, Role
from tests.factories import AccountFactory, IssuerFactory, MappingFactory, RoleFactory
from tests.registry.conftest import as_yaml

pytestmark = pytest.mark.django_db

STRICT = {
    "require_protected": True,
    "forbid_pipeline_sources": ["merge_request_event", "external_pull_request_event"],
    "max_project_breadth": "namespace",
    "require_environment": True,
    "max_session_seconds": 3600,
    "require_ci_config_ref_uri": "gitlab.example.com/platform/pipelines//*@refs/heads/main",
}


def apply(tmp_path, data: dict, *args: str) -> tuple[str, str]:
    path = tmp_path / "rolegate.yaml"
    path.write_text(as_yaml(data))
    out, err = io.StringIO(), io.StringIO()
    call_command("apply", str(path), *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def refused(tmp_path, data: dict, *args: str) -> list[str]:
    path = tmp_path / "rolegate.yaml"
    path.write_text(as_yaml(data))
    err = io.StringIO()
    with pytest.raises(CommandError, match="nothing was changed"):
        call_command("apply", str(path), *args, stdout=io.StringIO(), stderr=err)
    return err.getvalue().splitlines()


def guarded(minimal: dict, **rails) -> dict:
    minimal["accounts"][0]["guardrails"] = rails or dict(STRICT)
    return minimal


def compliant(minimal: dict) -> dict:
    minimal["mappings"][0].update(
        protected=True,
        environment="production",
        pipeline_sources=["push", "web"],
        ci_config_ref_uri="gitlab.example.com/platform/pipelines//deploy.yml@refs/heads/main",
    )
    return minimal


# --- the rules themselves ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "breadth"),
    [
        ("platform/web", "project"),
        ("platform/*", "namespace"),
        ("platform/web-?", "namespace"),
        ("*", "any"),
        ("*/*", "any"),
        ("*/web", "any"),
        ("plat*", "any"),
        ("platform*/web", "any"),
    ],
)
def test_project_breadth(pattern, breadth):
    assert guardrails.project_breadth(pattern) == breadth


@given(st.text(alphabet="ab/*?", min_size=1, max_size=8), st.text(alphabet="ab/", max_size=8))
def test_a_namespace_pattern_matches_projects_of_one_namespace_only(pattern, value):
    if guardrails.project_breadth(pattern) != "any" and patterns.matches(pattern, value):
        namespace = patterns.literal_prefix(pattern).split("/", 1)[0]
        assert value.split("/", 1)[0] == namespace


# --- apply ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dry_run", [False, True])
def test_apply_refuses_each_guardrail_with_its_path(tmp_path, minimal, dry_run):
    data = guarded(minimal)
    data["mappings"][0].update(project="*", protected=False, pipeline_sources=["push", "merge_request_event"])
    data["roles"][0]["max_session_seconds"] = 7200
    lines = refused(tmp_path, data, *(["--dry-run"] if dry_run else []))
    fields = [line.split(":", 1)[0] for line in lines]
    assert fields == [
        "roles[0].max_session_seconds",
        "mappings[0].protected",
        "mappings[0].pipeline_sources",
        "mappings[0].project",
        "mappings[0].environment",
        "mappings[0].ci_config_ref_uri",
    ]
    assert "requires a ci_config_ref_uri pattern within" in lines[5]
    assert "account prod requires protected: true on every mapping (guardrail require_protected)" in lines[1]
    assert "forbids the pipeline source(s) merge_request_event" in lines[2]
    assert "max_project_breadth: namespace" in lines[3]
    assert "caps sessions at 3600 seconds" in lines[0]
    assert Mapping.objects.count() == 0


def test_an_empty_source_list_is_refused_when_sources_are_forbidden(tmp_path, minimal):
    data = compliant(guarded(minimal))
    data["mappings"][0]["pipeline_sources"] = []
    (line,) = refused(tmp_path, data)
    assert line.startswith("mappings[0].pipeline_sources: account prod forbids the pipeline sources")
    assert "an empty list means any source" in line


def test_a_compliant_file_applies_and_round_trips_through_export(tmp_path, minimal):
    data = compliant(guarded(minimal))
    apply(tmp_path, data)
    account = Account.objects.get()
    assert account.guardrails == guardrails.Guardrails(
        True,
        ("merge_request_event", "external_pull_request_event"),
        "namespace",
        True,
        3600,
        "gitlab.example.com/platform/pipelines//*@refs/heads/main",
    )
    exported = export_document()
    assert yaml.safe_load(exported)["accounts"][0]["guardrails"] == STRICT
    (tmp_path / "exported.yaml").write_text(exported)
    out = io.StringIO()
    call_command("apply", str(tmp_path / "exported.yaml"), stdout=out)
    assert out.getvalue().startswith("No changes.")


def test_unset_guardrails_export_their_defaults_and_re_apply_as_no_op(tmp_path, minimal):
    apply(tmp_path, minimal)
    assert yaml.safe_load(export_document())["accounts"][0]["guardrails"] == {
        "require_protected": False,
        "forbid_pipeline_sources": [],
        "max_project_breadth": "any",
        "require_environment": False,
        "max_session_seconds": None,
        "require_ci_config_ref_uri": None,
    }


def test_tightening_a_guardrail_names_the_mappings_it_would_break(tmp_path, minimal):
    apply(tmp_path, minimal)
    kept = {**minimal["mappings"][0], "name": "web-tags", "ref": "v*"}
    apply(tmp_path, {**minimal, "mappings": [*minimal["mappings"], kept]})
    # The file fixes web-main but no longer lists web-tags (kept without --prune).
    data = guarded(minimal, require_protected=True)
    data["mappings"][0]["protected"] = True
    (line,) = refused(tmp_path, data)
    assert line.startswith("accounts[0].guardrails.require_protected: mapping web-tags (not in this file): ")
    assert Account.objects.get().require_protected is False
    # Listed in the file, it is named at its own field.
    data["mappings"].append(kept)
    (line,) = refused(tmp_path, data)
    assert line.startswith("mappings[1].protected: account prod requires protected: true")


def test_tightening_a_guardrail_and_fixing_the_mappings_in_one_file_applies(tmp_path, minimal):
    apply(tmp_path, minimal)
    out, _ = apply(tmp_path, compliant(guarded(minimal)))
    assert "~ update account prod: guardrails.require_protected false -> true" in out
    assert Account.objects.get().require_protected
    assert Mapping.objects.get().protected


def test_loosening_a_guardrail_and_using_it_in_one_file_applies(tmp_path, minimal):
    apply(tmp_path, compliant(guarded(minimal)))
    data = guarded(minimal, require_protected=False)
    data["mappings"][0].update(protected=False, environment=None, pipeline_sources=[])
    apply(tmp_path, data)
    assert Mapping.objects.get().protected is False


def test_condition_guardrails_need_a_brokered_account(tmp_path, minimal):
    data = guarded(minimal, require_protected=True, max_project_breadth="project")
    data["accounts"][0]["mode"] = "direct"
    data["mappings"][0]["protected"] = True
    lines = refused(tmp_path, data)
    assert lines == [
        "accounts[0].guardrails.require_protected: In direct mode IAM checks only a GitLab token's project and "
        "ref, so this guardrail would promise a condition nothing enforces; use brokered mode or turn it off."
    ]


def test_a_bad_guardrail_value_is_named_by_its_path(tmp_path, minimal):
    data = guarded(minimal, max_project_breadth="group", max_session_seconds=60, colour="red")
    lines = refused(tmp_path, data)
    assert [line.split(":", 1)[0] for line in lines] == [
        "accounts[0].guardrails.colour",
        "accounts[0].guardrails.max_project_breadth",
        "accounts[0].guardrails.max_session_seconds",
    ]


# --- the registry services (what any API writes through) -----------------------------------------


def test_services_refuse_a_mapping_that_breaks_a_guardrail():
    role = RoleFactory(account=AccountFactory(require_protected=True))
    with pytest.raises(ValidationError) as caught:
        services.mapping_create(
            actor="test", name="m", issuer=IssuerFactory(), role=role, project="platform/web", protected=False
        )
    assert list(caught.value.message_dict) == ["protected"]
    assert Mapping.objects.count() == 0


def test_services_refuse_a_guardrail_that_existing_mappings_and_roles_break():
    account = AccountFactory()
    role = RoleFactory(account=account, name="deploy", max_session_seconds=7200)
    MappingFactory(name="web-any", role=role, project="platform/web", protected=False)
    with pytest.raises(ValidationError) as caught:
        services.registry_update(account, actor="test", require_protected=True, max_session_seconds=3600)
    errors = caught.value.message_dict
    assert errors["require_protected"][0].startswith("Mapping web-any: account prod requires protected: true")
    assert errors["max_session_seconds"][0].startswith("Role prod/deploy: account prod caps sessions at 3600")
    assert Account.objects.get().require_protected is False


def test_services_refuse_moving_a_role_into_an_account_whose_guardrails_its_mappings_break():
    role = RoleFactory(account=AccountFactory(name="dev", account_id="111111111111"), name="deploy")
    MappingFactory(name="web-any", role=role, protected=False)
    strict = AccountFactory(name="prod", account_id="222222222222", require_protected=True)
    role.account = strict
    with pytest.raises(ValidationError, match="Mapping web-any: account prod requires protected"):
        services.registry_save(role, actor="test")
    assert Role.objects.get().account.name == "dev"


# --- the admin -----------------------------------------------------------------------------------


def test_admin_mapping_form_shows_the_guardrail_on_the_field(platform_admin):
    role = RoleFactory(account=AccountFactory(max_project_breadth="namespace"))
    response = platform_admin.post(
        reverse("admin:mappings_mapping_add"),
        {
            "name": "everything",
            "issuer": IssuerFactory().pk,
            "role": role.pk,
            "project": "*",
            "ref": "main",
            "ref_type": "branch",
            "expires_at_0": "",
            "expires_at_1": "",
            "enabled": "on",
        },
    )
    assert response.status_code == 200
    assert (
        response.context["adminform"]
        .form.errors["project"][0]
        .startswith("Account prod allows only patterns inside one namespace")
    )
    assert not Mapping.objects.exists()


def test_admin_account_form_names_the_mappings_a_new_guardrail_breaks(platform_admin):
    account = AccountFactory(name="prod", account_id="123456789012")
    MappingFactory(name="web-any", role=RoleFactory(account=account), protected=False)
    response = platform_admin.post(
        reverse("admin:mappings_account_change", args=[account.pk]),
        {
            "name": "prod",
            "account_id": "123456789012",
            "mode": "brokered",
            "audience": "sts.amazonaws.com",
            "trust_policy_limit": "2048",
            "require_protected": "on",
            "max_project_breadth": "any",
        },
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["require_protected"][0].startswith("Mapping web-any: account prod requires protected: true")
    assert Account.objects.get().require_protected is False


def test_require_ci_config_ref_uri_accepts_only_narrower_patterns(tmp_path, minimal):
    data = compliant(guarded(minimal))
    data["mappings"][0]["ci_config_ref_uri"] = "gitlab.example.com/platform/*"
    (line,) = refused(tmp_path, data)
    assert line.startswith("mappings[0].ci_config_ref_uri: account prod requires a ci_config_ref_uri pattern within")
    assert "'gitlab.example.com/platform/*' is broader" in line
    data["mappings"][0]["ci_config_ref_uri"] = "gitlab.example.com/platform/pipelines//deploy-?.yml@refs/heads/main"
    apply(tmp_path, data)
    assert Mapping.objects.get().ci_config_ref_uri.endswith("deploy-?.yml@refs/heads/main")


def test_require_ci_config_ref_uri_needs_a_brokered_account(tmp_path, minimal):
    data = guarded(minimal, require_ci_config_ref_uri="gitlab.example.com/*")
    data["accounts"][0]["mode"] = "direct"
    data["mappings"] = []
    lines = refused(tmp_path, data)
    assert any(line.startswith("accounts[0].guardrails.require_ci_config_ref_uri: In direct mode") for line in lines)
