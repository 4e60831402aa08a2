"""Identity pins in the database (mappings.pins, docs/trust-model.md#identity-pins): recorded all or
none on first use, in every process's snapshot on its next request, moved only by a recorded
identity change; in ``export``, ``apply`` and ``accept_identity_change``."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction

from mappings import config, pins, selectors
from mappings.matching import NAMESPACE, PROJECT, Pin
from mappings.models import IdentityChange, IdentityPin, Issuer, RegistryChange, Role
from mappings.selectors import registry_version
from tests.factories import IssuerFactory, web_main_deploy
from tests.registry.conftest import as_yaml

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def issuer() -> Issuer:
    web_main_deploy(pin_identity=True)
    return Issuer.objects.get()


def first_use(issuer: Issuer, project_id: str = "20", namespace_id: str = "72") -> list:
    return pins.pins_record(
        [
            Pin(issuer.name, PROJECT, "platform/web", project_id, pinned_by="first granted through mapping web-main"),
            Pin(issuer.name, NAMESPACE, "platform", namespace_id, pinned_by="first granted through mapping web-main"),
        ]
    )


def test_a_first_use_records_the_pins_and_every_snapshot_gets_them_by_a_patch(issuer, monkeypatch):
    before = selectors.registry()
    version = registry_version()
    monkeypatch.setattr(selectors, "_built", lambda *a: pytest.fail("rebuilt instead of patched"))
    assert first_use(issuer) == []
    assert registry_version() == version + 1
    assert sorted(RegistryChange.objects.filter(version=version + 1).values_list("kind", flat=True)) == ["pin", "pin"]
    after = selectors.registry()
    assert after is not before and len(before.pins) == 0
    project = after.pins.get(issuer.name, PROJECT, "platform/web")
    assert (project.gitlab_id, project.pinned_by) == ("20", "first granted through mapping web-main")
    assert project.pinned_at is not None
    assert after.pins.get(issuer.name, NAMESPACE, "platform").gitlab_id == "72"


def test_another_id_for_a_pinned_path_records_nothing_and_names_the_pin(issuer):
    first_use(issuer)
    version = registry_version()
    [conflict] = pins.pins_record(
        [Pin(issuer.name, NAMESPACE, "platform", "72"), Pin(issuer.name, PROJECT, "platform/web", "99")]
    )
    assert (conflict.field, conflict.pattern, conflict.value) == ("pinned_project_id", "20", "99")
    assert conflict.pin.pinned_at is not None
    assert registry_version() == version
    assert IdentityPin.objects.get(kind=PROJECT).gitlab_id == "20"


def test_a_refused_first_use_records_none_of_its_pins(issuer):
    pins.pins_record([Pin(issuer.name, NAMESPACE, "platform", "72")])
    conflicts = pins.pins_record(
        [Pin(issuer.name, PROJECT, "platform/web", "20"), Pin(issuer.name, NAMESPACE, "platform", "999")]
    )
    assert [c.field for c in conflicts] == ["pinned_namespace_id"]
    assert not IdentityPin.objects.filter(kind=PROJECT).exists()  # all or none


def test_the_same_ids_again_change_nothing(issuer):
    first_use(issuer)
    version = registry_version()
    assert first_use(issuer) == []
    assert registry_version() == version and IdentityPin.objects.count() == 2


def test_one_path_has_one_pin_per_issuer_and_kind(issuer):
    first_use(issuer)
    with pytest.raises(IntegrityError), transaction.atomic():
        IdentityPin.objects.create(
            issuer=issuer, kind=PROJECT, path="platform/web", gitlab_id="99", pinned_at="2026-01-01T00:00:00Z"
        )


def test_an_accepted_change_is_recorded_and_moves_the_pin_in_every_snapshot(issuer):
    first_use(issuer)
    assert selectors.registry().pins.get(issuer.name, PROJECT, "platform/web").gitlab_id == "20"
    change = pins.identity_change_accept(
        issuer=issuer.name, kind=PROJECT, path="platform/web", new_id="99", actor="admin:lead", note="transferred"
    )
    assert (change.old_id, change.new_id, change.actor, change.note, change.issuer_name) == (
        "20",
        "99",
        "admin:lead",
        "transferred",
        issuer.name,
    )
    pin = selectors.registry().pins.get(issuer.name, PROJECT, "platform/web")
    assert (pin.gitlab_id, pin.pinned_by, pin.pinned_at) == (
        "99",
        "identity change accepted by admin:lead",
        change.accepted_at,
    )
    assert IdentityChange.objects.get().pin.gitlab_id == "99"


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"path": "platform/api"}, "No project 'platform/api' of issuer 'gitlab-example' is pinned."),
        ({"new_id": "20"}, "is pinned to 20 already"),
        ({"new_id": "9 9"}, "is not a GitLab id"),
        ({"new_id": ""}, "is not a GitLab id"),
        ({"note": "  "}, "Say why"),
        ({"note": "x" * 501}, "longer than 500"),
        ({"kind": "group"}, "must be one of project, namespace"),
    ],
)
def test_an_identity_change_is_refused_with_a_reason(issuer, fields, why):
    first_use(issuer)
    arguments = {"issuer": issuer.name, "kind": PROJECT, "path": "platform/web", "new_id": "99", "note": "n", **fields}
    with pytest.raises(pins.IdentityChangeRefused, match=why.replace("(", r"\(").replace("'", "'")):
        pins.identity_change_accept(actor="t", **arguments)
    assert not IdentityChange.objects.exists()
    assert IdentityPin.objects.get(kind=PROJECT).gitlab_id == "20"


def test_the_registry_default_pins_mappings_that_say_nothing(settings):
    settings.ROLEGATE_PIN_IDENTITY = True
    web_main_deploy()  # pin_identity left empty
    web_main_deploy(name="never", pin_identity=False, issuer=Issuer.objects.get(), role=Role.objects.get())
    rules = {rule.name: rule.pin_identity for rule in selectors.registry().rules()}
    assert rules == {"web-main-deploy": True, "never": False}
    settings.ROLEGATE_PIN_IDENTITY = False
    assert {rule.name: rule.pin_identity for rule in selectors.registry_rules()} == {
        "web-main-deploy": False,
        "never": False,
    }


# --- the configuration file ----------------------------------------------------------------------


def test_export_lists_the_pins_and_applying_it_is_a_no_op(issuer, tmp_path):
    first_use(issuer)
    exported = run("export")
    assert "pin_identity: true" in exported
    assert "pins:\n  - issuer: gitlab-example\n    kind: namespace\n    path: platform\n    id: '72'\n" in exported
    path = tmp_path / "exported.yaml"
    path.write_text(exported)
    version = registry_version()
    assert run("apply", str(path), "--prune").startswith("No changes.")
    assert registry_version() == version


def test_apply_creates_the_pins_of_an_export_on_a_fresh_database(issuer, tmp_path):
    first_use(issuer)
    exported = run("export")
    pinned = {(p.kind, p.path): (p.gitlab_id, p.pinned_at, p.pinned_by) for p in IdentityPin.objects.all()}
    (tmp_path / "empty.yaml").write_text("")
    run("apply", str(tmp_path / "empty.yaml"), "--prune")
    assert not IdentityPin.objects.exists() and not Issuer.objects.exists()  # --prune took the issuer and its pins
    path = tmp_path / "exported.yaml"
    path.write_text(exported)
    out = run("apply", str(path))
    assert "+ create pin gitlab-example namespace platform: id null -> '72'" in out
    assert "+ create pin gitlab-example project platform/web: id null -> '20'" in out
    assert {(p.kind, p.path): (p.gitlab_id, p.pinned_at, p.pinned_by) for p in IdentityPin.objects.all()} == pinned
    assert selectors.registry().pins.get("gitlab-example", PROJECT, "platform/web").gitlab_id == "20"


def test_apply_never_moves_a_pin(issuer, tmp_path):
    first_use(issuer)
    data = config.parse_document(run("export"))
    text = run("export").replace("id: '20'", "id: '99'")
    assert data.pins  # the export parses
    path = tmp_path / "moved.yaml"
    path.write_text(text)
    with pytest.raises(CommandError):
        run("apply", str(path))
    with pytest.raises(config.ConfigError) as refused:
        config.apply_document(config.parse_document(text), prune=False, actor="t")
    [(where, message)] = refused.value.errors
    assert where == "pins[1].id"
    assert "pinned to 20 in the database, not 99" in message and "accept_identity_change" in message
    assert IdentityPin.objects.get(kind=PROJECT).gitlab_id == "20"


def test_pins_the_file_does_not_list_are_kept_even_with_prune(issuer, tmp_path):
    first_use(issuer)
    text = run("export")
    path = tmp_path / "no-pins.yaml"
    path.write_text(text[: text.index("pins:")])
    assert run("apply", str(path), "--prune").startswith("No changes.")
    assert IdentityPin.objects.count() == 2


@pytest.mark.parametrize(
    ("pin", "where", "message"),
    [
        ({"kind": "group"}, "pins[0].kind", "must be one of project, namespace"),
        ({"id": "x1"}, "pins[0].id", "A GitLab id is 1 to 64 digits"),
        ({"id": 20}, "pins[0].id", 'must be a string; quote it ("20")'),
        ({"issuer": "elsewhere"}, "pins[0].issuer", "no issuer named 'elsewhere' in this file"),
        ({"path": ""}, "pins[0].path", "must be 1 to 255 characters"),
        ({"colour": "red"}, "pins[0].colour", "unknown key"),
    ],
)
def test_a_bad_pin_in_a_file_is_named_at_its_path(minimal, pin, where, message):
    minimal["pins"] = [{"issuer": "gitlab-example", "kind": "project", "path": "platform/web", "id": "20", **pin}]
    with pytest.raises(config.ConfigError) as refused:
        config.parse_document(as_yaml(minimal))
    assert any(path == where and message in text for path, text in refused.value.errors), refused.value.errors


def test_a_path_pinned_twice_in_a_file_is_refused(minimal):
    entry = {"issuer": "gitlab-example", "kind": "project", "path": "platform/web", "id": "20"}
    minimal["pins"] = [entry, {**entry, "id": "21"}]
    with pytest.raises(config.ConfigError) as refused:
        config.parse_document(as_yaml(minimal))
    assert refused.value.errors == [
        ("pins[1]", "project 'platform/web' of issuer 'gitlab-example' is already pinned at pins[0]")
    ]


def test_pin_identity_in_a_file(minimal):
    minimal["mappings"][0]["pin_identity"] = True
    [rule] = config.rules_from_document(as_yaml(minimal))
    assert rule.pin_identity
    minimal["mappings"][0]["pin_identity"] = "yes"
    with pytest.raises(config.ConfigError, match=r"mappings\[0\].pin_identity: must be true or false"):
        config.parse_document(as_yaml(minimal))


# --- manage.py accept_identity_change -----------------------------------------------------------


def test_the_command_accepts_a_change_and_says_what_it_recorded(issuer, monkeypatch):
    first_use(issuer)
    monkeypatch.setattr("getpass.getuser", lambda: "lead")
    out = run("accept_identity_change", "platform/web", "99", "--note", "moved to a new project")
    change = IdentityChange.objects.get()
    assert out == (
        f"project platform/web of issuer gitlab-example: pinned to 99 (was 20); identity change {change.pk} "
        "recorded by lead (accept_identity_change)\n"
    )
    assert change.note == "moved to a new project"
    out = run("accept_identity_change", "platform", "1000", "--namespace", "--note", "group recreated")
    assert "namespace platform of issuer gitlab-example: pinned to 1000 (was 72)" in out


def test_the_command_refuses_with_one_line(issuer):
    first_use(issuer)
    with pytest.raises(CommandError, match="No project 'platform/api' is pinned"):
        run("accept_identity_change", "platform/api", "99", "--note", "n")
    with pytest.raises(CommandError, match="not a GitLab id"):
        run("accept_identity_change", "platform/web", "abc", "--note", "n")
    other = IssuerFactory(name="other", url="https://gitlab.other.example")
    pins.pins_record([Pin(other.name, PROJECT, "platform/web", "5")])
    with pytest.raises(CommandError, match="pinned for issuers gitlab-example, other; name one with --issuer"):
        run("accept_identity_change", "platform/web", "99", "--note", "n")
    run("accept_identity_change", "platform/web", "6", "--issuer", "other", "--note", "n")
    assert IdentityPin.objects.get(issuer=other).gitlab_id == "6"
    assert IdentityPin.objects.get(issuer=issuer, kind=PROJECT).gitlab_id == "20"
