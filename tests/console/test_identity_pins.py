"""Identity pins in the console (docs/console.md#identity-pins): explain shows the pins of the
token's paths and whether they match; the admin lists pins read-only and accepts a change through
its one action (recorded); replay re-decides with today's pins."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Permission

from console.replay import proposed_registry, replay_events
from mappings import pins
from mappings.config import export_document
from mappings.matching import NAMESPACE, PROJECT, Pin
from mappings.models import IdentityChange, IdentityPin
from tests.console.factories import AuditEventFactory, UserFactory, denied, explain_form
from tests.factories import web_main_deploy

pytestmark = pytest.mark.django_db
EXPLAIN_API = "/api/v1/explain"
EXPLAIN = "/admin/rolegate/explain/"
PINS = "/admin/mappings/identitypin/"
CHANGES = "/admin/mappings/identitychange/"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


@pytest.fixture
def pinned(db):
    """web-main-deploy pins on first use, and platform/web (20) and platform (72) are pinned."""
    mapping = web_main_deploy(pin_identity=True)
    assert (
        pins.pins_record(
            [
                Pin("gitlab-example", PROJECT, "platform/web", "20", pinned_by="first granted through mapping m"),
                Pin("gitlab-example", NAMESPACE, "platform", "72", pinned_by="first granted through mapping m"),
            ]
        )
        == []
    )
    return mapping


def explain(api, claims) -> dict:
    response = api.post(EXPLAIN_API, {"issuer": "gitlab-example", "claims": claims}, format="json")
    assert response.status_code == 200, response.json()
    return response.json()


def test_explain_shows_the_pins_and_that_they_match(api, pinned, web_main_claims):
    body = explain(api, web_main_claims)
    assert body["decision"] == "granted"
    assert body["mappings"][0]["pin_identity"] is True
    project, namespace = body["pins"]
    assert {k: project[k] for k in ("kind", "path", "pinned_id", "token_id", "matches", "would_pin")} == {
        "kind": "project",
        "path": "platform/web",
        "pinned_id": "20",
        "token_id": "20",
        "matches": True,
        "would_pin": False,
    }
    assert project["pinned_at"].endswith("Z") and project["pinned_by"] == "first granted through mapping m"
    assert (namespace["kind"], namespace["pinned_id"], namespace["matches"]) == ("namespace", "72", True)


def test_explain_of_another_project_at_the_path_says_identity_changed(api, pinned, web_main_claims):
    body = explain(api, {**web_main_claims, "project_id": "99"})
    assert (body["decision"], body["reason"]) == ("denied", "identity_changed")
    assert "pinned to project_id 20" in body["detail"] and "this token has project_id 99" in body["detail"]
    assert body["mappings"][0]["failed"] == [{"field": "pinned_project_id", "pattern": "20", "value": "99"}]
    assert [(p["kind"], p["matches"]) for p in body["pins"]] == [("project", False), ("namespace", True)]


def test_explain_says_what_a_first_use_would_pin(api, web_main_claims):
    web_main_deploy(pin_identity=True)
    body = explain(api, web_main_claims)
    assert [(p["kind"], p["pinned_id"], p["matches"], p["would_pin"]) for p in body["pins"]] == [
        ("project", None, None, True),
        ("namespace", None, None, True),
    ]
    assert not IdentityPin.objects.exists()  # explain never pins


def test_the_explain_page_shows_the_pins(admin_client, pinned):
    form = explain_form(project_id="99")
    response = admin_client.post(EXPLAIN, form)
    page = response.content.decode()
    assert response.context["result"]["explanation"].decision.reason == "identity_changed"
    assert '<table id="pins">' in page
    assert "differs: pinning mappings refuse it (identity_changed)" in page
    page = admin_client.post(EXPLAIN, {**form, "project_id": "20"}).content.decode()
    assert 'id="decision" class="granted"' in page and '<td class="pin-verdict">matches</td>' in page


def test_the_pins_admin_is_read_only(admin_client, pinned):
    page = admin_client.get(PINS).content.decode()
    assert "platform/web" in page and "accept_identity_change" in page
    pin = IdentityPin.objects.get(kind=PROJECT)
    assert admin_client.get(f"{PINS}{pin.pk}/change/").status_code == 200  # viewable
    assert admin_client.post(f"{PINS}{pin.pk}/change/", {"gitlab_id": "99"}).status_code == 403
    assert admin_client.get(f"{PINS}add/").status_code == 403
    assert admin_client.post(f"{PINS}{pin.pk}/delete/", {"post": "yes"}).status_code == 403
    assert IdentityPin.objects.get(kind=PROJECT).gitlab_id == "20"


def test_the_admin_action_asks_for_the_new_id_and_a_note_then_records_the_change(admin_client, pinned, staff):
    pin = IdentityPin.objects.get(kind=PROJECT)
    chosen = {"action": "accept_identity_change", "_selected_action": [pin.pk]}
    form = admin_client.post(PINS, chosen)
    page = form.content.decode()
    assert form.status_code == 200 and 'id="accept-identity-change"' in page
    assert (
        "/admin/exchange/auditevent/?reason=identity_changed&amp;issuer=gitlab-example&amp;project_path=platform"
        in page
    )
    incomplete = admin_client.post(PINS, {**chosen, "apply": "1", "new_id": "9x", "note": ""}).content.decode()
    assert "A GitLab id is 1 to 64 digits" in incomplete and not IdentityChange.objects.exists()
    done = admin_client.post(PINS, {**chosen, "apply": "1", "new_id": "99", "note": "transferred from the old group"})
    assert done.status_code == 302
    change = IdentityChange.objects.get()
    assert (change.path, change.old_id, change.new_id, change.actor, change.note) == (
        "platform/web",
        "20",
        "99",
        f"admin:{staff.username}",
        "transferred from the old group",
    )
    assert IdentityPin.objects.get(kind=PROJECT).gitlab_id == "99"
    listed = admin_client.get(CHANGES).content.decode()
    assert "transferred from the old group" in listed and f"admin:{staff.username}" in listed


def test_the_admin_action_refuses_the_id_already_pinned(admin_client, pinned):
    pin = IdentityPin.objects.get(kind=PROJECT)
    page = admin_client.post(
        PINS,
        {"action": "accept_identity_change", "_selected_action": [pin.pk], "apply": "1", "new_id": "20", "note": "n"},
    ).content.decode()
    assert "is pinned to 20 already" in page and not IdentityChange.objects.exists()


def test_only_who_may_change_pins_sees_the_action(client, pinned):
    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_identitypin"))
    client.force_login(viewer)
    assert "accept_identity_change" not in client.get(PINS).content.decode()
    pin = IdentityPin.objects.get(kind=PROJECT)
    client.post(PINS, {"action": "accept_identity_change", "_selected_action": [pin.pk], "apply": "1", "new_id": "9"})
    assert IdentityPin.objects.get(kind=PROJECT).gitlab_id == "20"


def test_replay_decides_with_todays_pins(pinned, web_main_claims):
    """An event granted before the path was re-created, replayed today: refused identity_changed;
    the refusal replayed after an accepted change: granted."""
    granted_99 = AuditEventFactory(time=T0, project_id="99")
    refused_99 = denied(time=T0, reason="identity_changed", project_id="99", ref="main", ref_protected="true")
    registry = proposed_registry(export_document())
    [change] = replay_events(registry=registry, events=[granted_99, refused_99])
    assert (change.event.pk, change.after) == (granted_99.pk, "denied (identity_changed)")
    pins.identity_change_accept(
        issuer="gitlab-example", kind=PROJECT, path="platform/web", new_id="99", actor="t", note="n"
    )
    [change] = replay_events(registry=proposed_registry(export_document()), events=[granted_99, refused_99])
    assert change.event.pk == refused_99.pk and change.after.startswith("granted")
