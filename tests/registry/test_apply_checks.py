"""apply in a configuration repository's CI: the quota pre-check, lint warnings, --strict,
--detailed-exitcode and --format json; and the quota pre-check on the admin and the services."""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse

from mappings import services
from mappings.models import Account, Mapping
from mappings.selectors import registry_version
from tests.factories import AccountFactory, IssuerFactory, MappingFactory, RoleFactory
from tests.registry.conftest import as_yaml

pytestmark = pytest.mark.django_db


def run(tmp_path, data: dict, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) as the shell would see them."""
    path = tmp_path / "rolegate.yaml"
    path.write_text(as_yaml(data))
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("apply", str(path), *args, stdout=out, stderr=err)
        code = 0
    except CommandError as exc:
        code = exc.returncode
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue(), err.getvalue()


def crowded(minimal: dict, count: int) -> dict:
    """``count`` one-project mappings on prod/deploy-web: about 90 characters of policy each (the
    role-bound sub included)."""
    base = minimal["mappings"][0]
    minimal["mappings"] = [{**base, "name": f"web-{n}", "project": f"platform/web-{n}"} for n in range(count)]
    return minimal


# --- quota pre-check -----------------------------------------------------------------------------


@pytest.mark.parametrize("dry_run", [False, True])
def test_apply_refuses_a_role_whose_policy_would_not_fit_naming_role_size_and_limit(tmp_path, minimal, dry_run):
    code, _, err = run(tmp_path, crowded(minimal, 40), *(["--dry-run"] if dry_run else []))
    assert code == 1
    (line,) = err.splitlines()
    path, message = line.split(": ", 1)
    assert path == "roles[0]"
    assert message.startswith("the trust policy of role prod/deploy-web would be ")
    size = int(message.split(" would be ")[1].split(" ")[0])
    assert size > 2048
    assert "over account prod's quota of 2048 (trust_policy_limit)" in message
    assert Mapping.objects.count() == 0


def test_the_same_file_fits_a_raised_quota_and_the_plan_shows_the_size(tmp_path, minimal):
    data = crowded(minimal, 30)  # over 2048, under 4096
    data["accounts"][0]["trust_policy_limit"] = 4096
    code, out, _ = run(tmp_path, data)
    assert code == 0
    (line,) = [line for line in out.splitlines() if line.startswith("policy ")]
    assert line.startswith("policy prod/deploy-web: new -> ") and line.endswith(" of 4096 characters")
    # Lowering the quota below the policy is refused at the account, naming the role.
    data["accounts"][0]["trust_policy_limit"] = 2048
    code, _, err = run(tmp_path, data)
    assert code == 1
    assert err.startswith("roles[0]: the trust policy of role prod/deploy-web would be ")
    assert Account.objects.get().trust_policy_limit == 4096


def test_a_change_that_shrinks_an_over_quota_policy_is_let_through():
    """Taking trust away never waits: deleting or narrowing mappings of a role already over its
    quota (here: made so behind the services' back) is allowed, growing it further is not."""
    role = RoleFactory(account=AccountFactory(), name="deploy-web")
    mappings = [MappingFactory(role=role, name=f"web-{n}", project=f"platform/web-{n}") for n in range(40)]
    services.registry_delete(mappings[0], actor="test")
    services.registry_update(mappings[1], actor="test", project="platform/w")
    with pytest.raises(ValidationError, match=r"The trust policy of role prod/deploy-web would be \d+ characters"):
        services.mapping_create(actor="test", name="more", issuer=mappings[2].issuer, role=role, project="x/longer-one")
    assert Mapping.objects.count() == 39


def test_admin_refuses_a_mapping_that_would_overflow_the_quota(client):
    client.force_login(get_user_model().objects.create_superuser("admin", "a@example.com", "x"))
    role = RoleFactory(account=AccountFactory(), name="deploy-web")
    issuer = IssuerFactory()
    for n in range(30):
        MappingFactory(role=role, issuer=issuer, name=f"web-{n}", project=f"platform/web-{n}")
    before = registry_version()
    response = client.post(
        reverse("admin:mappings_mapping_add"),
        {
            "name": "one-too-many",
            "issuer": issuer.pk,
            "role": role.pk,
            "project": "platform/a-project-with-a-long-name-that-does-not-fit",
            "ref": "main",
            "ref_type": "branch",
            "expires_at_0": "",
            "expires_at_1": "",
            "enabled": "on",
        },
    )
    assert response.status_code == 200
    (error,) = response.context["adminform"].form.non_field_errors()
    assert error.startswith("The trust policy of role prod/deploy-web would be ")
    assert "quota of 2048" in error
    assert not Mapping.objects.filter(name="one-too-many").exists()
    assert registry_version() == before


# --- lint warnings and --strict ------------------------------------------------------------------


def risky(minimal: dict) -> dict:
    minimal["mappings"][0].update(project="platform/*", ref="*")
    return minimal


def test_the_plan_shows_lint_warnings_with_their_paths(tmp_path, minimal):
    code, out, _ = run(tmp_path, risky(minimal))
    assert code == 0
    assert out.splitlines()[-2:] == [
        "! warning mappings[0] (wildcard_project_unprotected): mapping web-main matches every project of "
        "'platform/*' on unprotected refs too: anyone who can push a branch to one of them can assume "
        "prod/deploy-web; set protected: true",
        "Applied.",
    ]
    assert "4 to create, 0 to update, 0 to delete, 0 unchanged. 1 warning." in out


def test_strict_turns_warnings_into_errors_and_changes_nothing(tmp_path, minimal):
    code, _, err = run(tmp_path, risky(minimal), "--strict")
    assert code == 1
    assert err.startswith("mappings[0]: mapping web-main matches every project of 'platform/*'")
    assert "(warning wildcard_project_unprotected, an error with --strict)" in err
    assert Mapping.objects.count() == 0


# --- --detailed-exitcode and --format json -------------------------------------------------------


def test_detailed_exitcode_is_2_with_changes_0_without_and_1_on_errors(tmp_path, minimal):
    code, out, _ = run(tmp_path, minimal, "--dry-run", "--detailed-exitcode")
    assert code == 2
    assert "Dry run: nothing was changed." in out
    assert Mapping.objects.count() == 0
    run(tmp_path, minimal)
    code, out, _ = run(tmp_path, minimal, "--dry-run", "--detailed-exitcode")
    assert (code, out.splitlines()[0][:11]) == (0, "No changes.")
    minimal["mappings"][0]["ref"] = "bad:ref"
    code, _, err = run(tmp_path, minimal, "--dry-run", "--detailed-exitcode")
    assert code == 1
    assert err.startswith("mappings[0].ref: ")


def test_without_detailed_exitcode_changes_exit_0(tmp_path, minimal):
    assert run(tmp_path, minimal, "--dry-run")[0] == 0


def test_json_plan_shape(tmp_path, minimal):
    code, out, _ = run(tmp_path, risky(minimal), "--dry-run", "--format", "json")
    assert code == 0
    plan = json.loads(out)
    assert set(plan) == {"applied", "dry_run", "changes", "summary", "policy_sizes", "warnings", "errors"}
    assert (plan["applied"], plan["dry_run"], plan["errors"]) == (False, True, [])
    assert plan["changes"][0] == {
        "action": "create",
        "kind": "issuer",
        "name": "gitlab-example",
        "path": "issuers[0]",
        "fields": [],
    }
    assert plan["summary"] == {"create": 4, "update": 0, "delete": 0, "unchanged": 0, "kept": 0}
    (size,) = plan["policy_sizes"]
    assert size["role"] == "prod/deploy-web" and size["before"] is None and size["limit"] == 2048 and size["fits"]
    assert size["role_arn"] == "arn:aws:iam::123456789012:role/deploy-web" and 0 < size["size"] <= 2048
    (warning,) = plan["warnings"]
    assert (warning["path"], warning["mapping"], warning["code"]) == (
        "mappings[0]",
        "web-main",
        "wildcard_project_unprotected",
    )


def test_json_update_fields_and_errors(tmp_path, minimal):
    run(tmp_path, minimal)
    minimal["mappings"][0]["expires_at"] = "2030-01-01T00:00:00Z"
    code, out, _ = run(tmp_path, minimal, "--format", "json", "--detailed-exitcode")
    assert code == 2
    plan = json.loads(out)
    assert plan["applied"] is True
    assert plan["changes"] == [
        {
            "action": "update",
            "kind": "mapping",
            "name": "web-main",
            "path": "mappings[0]",
            "fields": [{"name": "expires_at", "old": None, "new": "2030-01-01T00:00:00Z"}],
        }
    ]
    minimal["mappings"][0]["project"] = ""
    code, out, _ = run(tmp_path, minimal, "--format", "json")
    assert code == 1
    body = json.loads(out)
    assert body["applied"] is False
    assert body["errors"][0]["path"] == "mappings[0].project"
