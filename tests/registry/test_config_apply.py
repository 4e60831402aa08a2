"""``apply`` and ``export`` against the database (docs/configuration.md#applying-a-file)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from mappings import config
from mappings.models import Account, Issuer, Mapping, RegistryVersion, Role
from mappings.selectors import registry_version
from tests.registry.conftest import MINIMAL, as_yaml

pytestmark = pytest.mark.django_db

DEMO = Path(__file__).resolve().parents[2] / "demo" / "rolegate.yaml"


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def write(tmp_path, data: dict | str, name: str = "rolegate.yaml") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else as_yaml(data))
    return str(path)


def counts() -> tuple[int, int, int, int]:
    return (Issuer.objects.count(), Account.objects.count(), Role.objects.count(), Mapping.objects.count())


def test_apply_creates_everything_and_prints_the_plan(tmp_path):
    out, _ = run("apply", write(tmp_path, MINIMAL))
    assert out.splitlines() == [
        "+ create issuer gitlab-example",
        "+ create account prod",
        "+ create role prod/deploy-web",
        "+ create mapping web-main",
        "policy prod/deploy-web: new -> 400 of 2048 characters",
        "Plan: 4 to create, 0 to update, 0 to delete, 0 unchanged.",
        "Applied.",
    ]
    mapping = Mapping.objects.select_related("role__account", "issuer").get()
    assert (mapping.issuer.name, mapping.role.arn, mapping.ref, mapping.ref_type) == (
        "gitlab-example",
        "arn:aws:iam::123456789012:role/deploy-web",
        "main",
        "any",
    )


def test_second_apply_reports_no_changes_and_does_not_move_the_version(tmp_path):
    path = write(tmp_path, MINIMAL)
    run("apply", path)
    version = registry_version()
    out, _ = run("apply", path)
    assert out.startswith("No changes. Plan: 0 to create, 0 to update, 0 to delete, 4 unchanged.")
    assert registry_version() == version


def test_update_shows_the_changed_fields(tmp_path, minimal):
    run("apply", write(tmp_path, minimal))
    minimal["mappings"][0].update(ref="release/*", protected=True, expires_at="2027-01-01T00:00:00Z")
    minimal["roles"][0]["max_session_seconds"] = 7200
    out, _ = run("apply", write(tmp_path, minimal))
    assert "~ update role prod/deploy-web: max_session_seconds 3600 -> 7200" in out
    assert (
        "~ update mapping web-main: ref 'main' -> 'release/*', protected false -> true, "
        "expires_at null -> 2027-01-01T00:00:00Z" in out
    )
    assert Mapping.objects.get().ref == "release/*"
    assert Role.objects.get().max_session_seconds == 7200


def test_moving_a_mapping_to_another_role(tmp_path, minimal):
    run("apply", write(tmp_path, minimal))
    minimal["roles"].append({"account": "prod", "name": "deploy-api"})
    minimal["mappings"][0]["role"] = "prod/deploy-api"
    out, _ = run("apply", write(tmp_path, minimal))
    assert "~ update mapping web-main: role 'prod/deploy-web' -> 'prod/deploy-api'" in out
    assert Mapping.objects.get().role.name == "deploy-api"


def test_dry_run_changes_nothing(tmp_path):
    out, _ = run("apply", write(tmp_path, MINIMAL), "--dry-run")
    assert "+ create mapping web-main" in out
    assert out.rstrip().endswith("Dry run: nothing was changed.")
    assert counts() == (0, 0, 0, 0)
    assert registry_version() == 0


def test_without_prune_unlisted_objects_are_kept_and_counted(tmp_path, minimal):
    run("apply", write(tmp_path, minimal))
    minimal["mappings"] = []
    out, _ = run("apply", write(tmp_path, minimal))
    assert "1 not in the file kept (--prune deletes them)" in out
    assert Mapping.objects.count() == 1


def test_prune_deletes_children_before_parents(tmp_path, minimal):
    run("apply", write(tmp_path, minimal))
    out, _ = run("apply", write(tmp_path, {"issuers": [], "accounts": [], "roles": [], "mappings": []}), "--prune")
    assert out.splitlines()[:4] == [
        "- delete mapping web-main",
        "- delete role prod/deploy-web",
        "- delete account prod",
        "- delete issuer gitlab-example",
    ]
    assert counts() == (0, 0, 0, 0)


def test_prune_dry_run_deletes_nothing(tmp_path, minimal):
    run("apply", write(tmp_path, minimal))
    out, _ = run("apply", write(tmp_path, ""), "--prune", "--dry-run")
    assert "- delete mapping web-main" in out
    assert counts() == (1, 1, 1, 1)


def test_an_invalid_file_changes_nothing_and_lists_every_error_on_stderr(tmp_path, minimal):
    minimal["mappings"][0]["ref"] = ""
    minimal["mappings"][0]["pipeline_sources"] = ["push", "cron"]
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match="2 errors; nothing was changed"):
        call_command("apply", write(tmp_path, minimal), stdout=out, stderr=err)
    assert out.getvalue() == ""
    lines = err.getvalue().splitlines()
    assert lines[0] == "mappings[0].ref: The pattern must not be empty; use '*' to match anything."
    assert lines[1].startswith("mappings[0].pipeline_sources: Unknown pipeline source(s) 'cron'")
    assert counts() == (0, 0, 0, 0)


def test_an_unreadable_file_is_a_one_line_error(tmp_path):
    with pytest.raises(CommandError, match="cannot be read"):
        run("apply", str(tmp_path / "missing.yaml"))


def test_apply_is_all_or_nothing(tmp_path, minimal):
    """Two issuers swapping URLs fail at the database's uniqueness check on the second object;
    the issuer created earlier in the same run is rolled back too."""
    minimal["issuers"].append({"name": "gitlab-com", "url": "https://gitlab.com", "audiences": ["x"]})
    run("apply", write(tmp_path, minimal))
    version = registry_version()
    minimal["issuers"] = [
        {"name": "aaa-new", "url": "https://gitlab.new.example", "audiences": ["x"]},
        {"name": "gitlab-example", "url": "https://gitlab.com", "audiences": ["x"]},
        {"name": "gitlab-com", "url": "https://gitlab.example.com", "audiences": ["x"]},
    ]
    with pytest.raises(config.ConfigError) as caught:
        config.apply_document(config.parse_document(as_yaml(minimal)), prune=False, actor="test")
    assert caught.value.errors[0][0] == "issuers[1].url"
    assert not Issuer.objects.filter(name="aaa-new").exists()
    assert Issuer.objects.get(name="gitlab-example").url == "https://gitlab.example.com"
    assert registry_version() == version


def test_a_file_clashing_with_an_unlisted_object_is_refused_before_any_change(tmp_path, minimal):
    run("apply", write(tmp_path, minimal))
    renamed = {
        "issuers": [],
        "accounts": [dict(minimal["accounts"][0], name="production")],
        "roles": [],
        "mappings": [],
    }
    with pytest.raises(CommandError):
        run("apply", write(tmp_path, renamed))
    assert list(Account.objects.values_list("name", flat=True)) == ["prod"]
    out, _ = run("apply", write(tmp_path, renamed), "--prune")
    assert "+ create account production" in out
    assert list(Account.objects.values_list("name", flat=True)) == ["production"]


def test_apply_goes_through_the_services(tmp_path, minimal, monkeypatch):
    """Each write moves the registry version and schedules the touched roles' IAM sync."""
    scheduled: list[set[int]] = []
    monkeypatch.setattr(
        "mappings.iam.scheduling.schedule_role_sync", lambda *, role_ids: scheduled.append(set(role_ids))
    )
    run("apply", write(tmp_path, minimal))
    assert RegistryVersion.objects.get().version == 4
    role_id = Role.objects.get().pk
    assert {role_id} in scheduled


def test_export_round_trips_with_apply(tmp_path):
    run("apply", str(DEMO))
    exported, _ = run("export")
    assert exported.startswith("# Rolegate configuration")
    out, _ = run("apply", write(tmp_path, exported, "exported.yaml"), "--prune")
    assert out.startswith("No changes.")
    original = {rule.name: rule for rule in config.rules_from_document(DEMO.read_text())}
    for rule in config.rules_from_document(exported):
        assert rule.__class__(**{**_fields(rule), "id": original[rule.name].id}) == original[rule.name]


def _fields(rule) -> dict:
    return {name: getattr(rule, name) for name in rule.__slots__}


def test_export_of_an_empty_registry_applies_cleanly(tmp_path):
    exported, _ = run("export")
    out, _ = run("apply", write(tmp_path, exported), "--prune")
    assert out.startswith("No changes.")


def big_configuration(count: int) -> dict:
    """``count`` mappings over 40 roles in 2 accounts: a large platform's configuration."""
    data = {
        "issuers": [dict(MINIMAL["issuers"][0])],
        # Up to 13 mappings per role: the raised ACLSizePerRole quota holds their trust policies.
        "accounts": [
            {"name": "prod", "account_id": "123456789012", "trust_policy_limit": 4096},
            {"name": "staging", "account_id": "210987654321", "trust_policy_limit": 4096},
        ],
        "roles": [{"account": account, "name": f"role-{n}"} for account in ("prod", "staging") for n in range(20)],
        "mappings": [],
    }
    for n in range(count):
        data["mappings"].append(
            {
                "name": f"team-{n}-deploy",
                "issuer": "gitlab-example",
                "role": f"{'prod' if n % 2 else 'staging'}/role-{(n // 2) % 20}",
                "project": f"group-{n % 37}/project-{n}",
                "ref": "main" if n % 3 else "release/*",
                "ref_type": "branch",
                "protected": bool(n % 2),
                "pipeline_sources": ["push", "web"] if n % 5 == 0 else [],
                "expires_at": "2030-01-01T00:00:00Z" if n % 7 == 0 else None,
            }
        )
    return data


def test_apply_of_500_mappings_uses_a_bounded_number_of_queries(tmp_path, django_assert_max_num_queries):
    """The 500-mapping target: a fixed number of queries per object on the first apply, and a
    constant handful (read the state, nothing to write) on the second."""
    path = write(tmp_path, big_configuration(500))
    objects = 1 + 2 + 40 + 500
    with django_assert_max_num_queries(10 * objects):
        run("apply", path)
    assert Mapping.objects.count() == 500
    # Read the state, lint the file's mappings; the batch's savepoint.
    with django_assert_max_num_queries(11):
        out, _ = run("apply", path)
    assert out.startswith("No changes. Plan: 0 to create, 0 to update, 0 to delete, 543 unchanged.")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_concurrent_applies_are_serialised():
    """Two applies of the same new file at once: one creates everything, the other waits for it
    and then finds nothing to do (instead of failing on duplicate names)."""
    import threading

    from django.db import connection

    from tests.services import require_postgresql

    require_postgresql()
    RegistryVersion.objects.create(pk=1, version=7)  # an existing registry, as in production
    data = big_configuration(50)
    document = config.parse_document(as_yaml(data))
    barrier = threading.Barrier(2)
    results: list[object] = []

    def apply_once():
        try:
            barrier.wait(timeout=10)
            results.append(config.apply_document(document, prune=False, actor="test").count("create"))
        except Exception as exc:  # reported by the assertion below
            results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=apply_once) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    every_object = sum(len(data[section]) for section in ("issuers", "accounts", "roles", "mappings"))
    assert sorted(results, key=repr) == [0, every_object], results


def test_revoke_sessions_on_removal_applies_and_round_trips(tmp_path):
    """The demo's prod account opts in to session revocation; export writes the key back."""
    run("apply", str(DEMO))
    assert list(Account.objects.filter(revoke_sessions_on_removal=True).values_list("name", flat=True)) == ["prod"]
    exported, _ = run("export")
    assert "revoke_sessions_on_removal: true" in exported and "revoke_sessions_on_removal: false" in exported
    out, _ = run("apply", write(tmp_path, exported, "exported.yaml"), "--prune")
    assert out.startswith("No changes.")


def test_apply_names_the_path_of_an_environment_pattern_no_session_tag_can_hold(tmp_path, minimal):
    minimal["mappings"][0]["environment"] = "prod{eu}"
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 error; nothing was changed"):
        call_command("apply", write(tmp_path, minimal), stdout=io.StringIO(), stderr=err)
    [line] = err.getvalue().splitlines()
    assert line.startswith("mappings[0].environment: The pattern holds '{}', which no AWS session tag value can")
    assert counts() == (0, 0, 0, 0)
