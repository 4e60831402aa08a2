"""Mappings bound on GitLab's ids (project_id, namespace_id) in configuration files, the registry
services and the admin: the keys, their validation by path, a mapping bound by id alone, the
direct-mode rule, and the apply/export round trip."""

from __future__ import annotations

import io

import pytest
import yaml
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse

from mappings import config, services
from mappings.models import Account, Mapping
from mappings.selectors import registry_rules
from tests.factories import AccountFactory, IssuerFactory, RoleFactory
from tests.registry.conftest import mapping_form
from tests.registry.test_conditions_config import apply, assert_read_back, assert_refused_by_path, refused

pytestmark = pytest.mark.django_db


def test_ids_apply_export_and_re_apply_as_a_no_op(tmp_path, minimal):
    minimal["mappings"][0].update(project_id=20, namespace_id="72")  # a YAML number or a string
    apply(tmp_path, minimal)
    mapping = Mapping.objects.get()
    assert (mapping.project, mapping.project_id, mapping.namespace_id) == ("platform/web", "20", "72")
    [rule] = registry_rules()
    assert (rule.project_id, rule.namespace_id) == ("20", "72")

    exported = config.export_document()
    data = yaml.safe_load(exported)
    assert {key: data["mappings"][0][key] for key in ("project", "project_id", "namespace_id")} == {
        "project": "platform/web",
        "project_id": "20",  # as GitLab's tokens carry it
        "namespace_id": "72",
    }
    assert apply(tmp_path, exported, "exported.yaml").startswith("No changes.")
    minimal["mappings"][0]["project_id"] = "20"
    assert apply(tmp_path, minimal, "as-string.yaml").startswith("No changes.")
    assert_read_back(exported)


def test_without_ids_the_keys_export_as_null(tmp_path, minimal):
    apply(tmp_path, minimal)
    data = yaml.safe_load(config.export_document())
    assert (data["mappings"][0]["project_id"], data["mappings"][0]["namespace_id"]) == (None, None)


def test_a_mapping_bound_by_id_alone_leaves_out_the_project(tmp_path, minimal):
    del minimal["mappings"][0]["project"]
    minimal["mappings"][0]["project_id"] = 20
    apply(tmp_path, minimal)
    mapping = Mapping.objects.get()
    assert (mapping.project, mapping.project_id) == ("*", "20")
    exported = config.export_document()
    assert yaml.safe_load(exported)["mappings"][0]["project"] == "*"
    assert apply(tmp_path, exported, "exported.yaml").startswith("No changes.")
    [rule] = config.rules_from_document(exported)
    assert (rule.project, rule.project_id) == ("*", "20")


def test_without_project_or_id_the_project_is_required(tmp_path, minimal):
    del minimal["mappings"][0]["project"]
    assert "mappings[0].project: is required (or give project_id or namespace_id)" in refused(tmp_path, minimal)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("project_id", "020", "without leading zeros"),
        ("project_id", "", "must not be an empty string"),
        ("project_id", -20, "positive whole number"),
        ("project_id", 0, "positive whole number"),
        ("project_id", "2O", "positive whole number"),
        ("project_id", "٢٠", "positive whole number"),  # Arabic-Indic digits: not GitLab's
        ("project_id", "1" * 20, "at most 19 digits"),
        ("project_id", True, "must be a GitLab id"),
        ("project_id", 20.0, "must be a GitLab id"),
        ("namespace_id", [72], "must be a GitLab id"),
        ("namespace_id", "72 ", "positive whole number"),
    ],
)
def test_each_id_is_validated_by_path(tmp_path, minimal, key, value, message):
    assert_refused_by_path(tmp_path, minimal, key, value, message)


def test_ids_need_session_tags_on_a_brokered_role(tmp_path, minimal):
    minimal["roles"][0]["session_tags"] = False
    minimal["mappings"][0]["namespace_id"] = 72
    lines = refused(tmp_path, minimal)
    assert any("does not use session tags" in line and "namespace_id" in line for line in lines), lines


def test_a_direct_account_needs_the_project_path_beside_an_id(tmp_path, minimal):
    minimal["accounts"][0]["mode"] = "direct"
    del minimal["mappings"][0]["project"]
    minimal["mappings"][0]["project_id"] = 20
    lines = refused(tmp_path, minimal)
    assert any(line.startswith("mappings[0].project: account prod is in direct mode") for line in lines), lines
    # With the path, the id is allowed (IAM does not check it there: a warning says so).
    minimal["mappings"][0]["project"] = "platform/web"
    apply(tmp_path, minimal)
    assert Mapping.objects.get().project_id == "20"


def test_an_account_with_mappings_bound_by_id_alone_cannot_turn_direct():
    account = AccountFactory()
    role = RoleFactory(account=account, name="deploy")
    services.mapping_create(actor="test", name="by-id", issuer=IssuerFactory(), role=role, project="*", project_id="20")
    with pytest.raises(ValidationError) as caught:
        services.registry_update(account, actor="test", mode=Account.Mode.DIRECT)
    assert caught.value.message_dict["mode"][0].startswith("Mapping by-id: account prod is in direct mode")
    assert Account.objects.get().mode == Account.Mode.BROKERED


def test_a_guardrail_counts_a_project_id_as_one_project():
    role = RoleFactory(account=AccountFactory(max_project_breadth="project"), name="deploy")
    issuer = IssuerFactory()
    services.mapping_create(actor="test", name="by-id", issuer=issuer, role=role, project="*", project_id="20")
    with pytest.raises(ValidationError) as caught:
        services.mapping_create(actor="test", name="by-ns", issuer=issuer, role=role, project="*", namespace_id="7")
    assert "max_project_breadth" in caught.value.message_dict["project"][0]


# --- the admin -----------------------------------------------------------------------------------


def by_id_form(issuer, role, **fields) -> dict:
    """The add-mapping form without a project pattern or other conditions."""
    return mapping_form(
        issuer, role, **{"name": "by-id", "project": "", "protected": None, "pipeline_sources": None, **fields}
    )


def test_the_admin_binds_a_mapping_by_id_alone(platform_admin):
    issuer, role = IssuerFactory(), RoleFactory(account=AccountFactory(), name="deploy")
    response = platform_admin.post(reverse("admin:mappings_mapping_add"), by_id_form(issuer, role, project_id="20"))
    assert response.status_code == 302, response.content.decode()[:3000]
    mapping = Mapping.objects.get()
    assert (mapping.project, mapping.project_id, mapping.namespace_id) == ("*", "20", None)
    listing = platform_admin.get(reverse("admin:mappings_mapping_changelist")).content.decode()
    assert "* (project_id 20)" in listing
    found = platform_admin.get(reverse("admin:mappings_mapping_changelist") + "?q=20").content.decode()
    assert "by-id" in found


def test_the_admin_refuses_neither_project_nor_id_and_a_bad_id(platform_admin):
    issuer, role = IssuerFactory(), RoleFactory(account=AccountFactory(), name="deploy")
    response = platform_admin.post(reverse("admin:mappings_mapping_add"), by_id_form(issuer, role))
    assert response.status_code == 200
    assert "or give a project ID or namespace ID" in response.content.decode()
    response = platform_admin.post(
        reverse("admin:mappings_mapping_add"), by_id_form(issuer, role, project="platform/web", namespace_id="07")
    )
    assert response.status_code == 200
    assert "without leading zeros" in response.content.decode()
    assert Mapping.objects.count() == 0


def test_the_plan_prints_a_change_of_id(tmp_path, minimal):
    minimal["mappings"][0]["project_id"] = 20
    apply(tmp_path, minimal)
    minimal["mappings"][0]["project_id"] = 99
    out = io.StringIO()
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(minimal, sort_keys=False))
    call_command("apply", str(path), "--dry-run", stdout=out, stderr=io.StringIO())
    assert "project_id" in out.getvalue() and "99" in out.getvalue()
    assert Mapping.objects.get().project_id == "20"
