"""Mappings bound on GitLab's ids in explain (the API and the admin's form), in the audit event's
"explain this job" link and in replay."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from console.replay import event_claims, proposed_registry, replay_events
from mappings.matching import Registry
from mappings.selectors import registry_rules
from tests.console.factories import AuditEventFactory, explain_form, proposed_file
from tests.factories import web_main_deploy

pytestmark = pytest.mark.django_db
URL = "/api/v1/explain"
EXPLAIN = "/admin/rolegate/explain/"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


@pytest.fixture
def bound_mapping(db):
    """web-main-deploy, bound to project 20 in namespace 72 (platform/web in web_main_claims)."""
    return web_main_deploy(project_id="20", namespace_id="72")


def test_explain_names_each_id_and_iam_agrees(api, bound_mapping, web_main_claims):
    payload = {"issuer": "gitlab-example", "claims": web_main_claims, "role_arn": bound_mapping.role.arn}
    granted = api.post(URL, payload, format="json").json()
    assert granted["decision"] == "granted"
    assert (granted["iam"]["allowed"], granted["iam"]["unchecked"]) == (True, [])

    # platform/web deleted and re-created by someone else: a new project id, a new namespace id.
    claims = {**web_main_claims, "project_id": "99", "namespace_id": "73"}
    denied = api.post(URL, {**payload, "claims": claims}, format="json").json()
    assert (denied["decision"], denied["reason"]) == ("denied", "no_matching_mapping")
    [evaluation] = denied["mappings"]
    assert evaluation["failed"] == [
        {"field": "project_id", "pattern": "20", "value": "99"},
        {"field": "namespace_id", "pattern": "72", "value": "73"},
    ]
    assert denied["iam"]["allowed"] is False  # the role's trust policy requires the tags too


def test_the_explain_form_takes_the_ids(admin_client, bound_mapping):
    form = explain_form(project_id="20", namespace_id="72")
    response = admin_client.post(EXPLAIN, form)
    assert response.context["result"]["explanation"].decision.granted
    assert "<code>project_id=20</code>" in response.content.decode()
    response = admin_client.post(EXPLAIN, {**form, "project_id": "99"})
    page = response.content.decode()
    assert 'id="decision" class="denied"' in page
    assert "project_id: pattern <code>20</code>, job has <code>99</code>" in page
    # Left empty, the claim is absent: a mapping that names it does not match.
    response = admin_client.post(EXPLAIN, {**form, "namespace_id": ""})
    [evaluation] = response.context["result"]["explanation"].evaluations
    assert [(f.field, f.value) for f in evaluation.failed] == [("namespace_id", None)]


def test_the_explain_form_refuses_an_id_no_token_could_carry(admin_client, bound_mapping):
    response = admin_client.post(EXPLAIN, explain_form(project_id="2O"))
    assert response.context["result"] is None
    assert response.context["form"].errors["project_id"] == ["A GitLab id is 1 to 64 digits, e.g. 20."]


def test_the_audit_events_explain_link_carries_the_ids(admin_client, bound_mapping):
    event = AuditEventFactory(time=T0, project_id="99", namespace_id="73")
    page = admin_client.get(f"/admin/exchange/auditevent/{event.pk}/change/").content.decode()
    start = page.index('id="explain-event"')
    href = page[page.rindex("href=", 0, start) + 6 : start - 2].replace("&amp;", "&")
    query = parse_qs(urlsplit(href).query)
    assert (query["project_id"], query["namespace_id"]) == (["99"], ["73"])
    prefilled = admin_client.get(href).context["form"]
    assert (prefilled.initial["project_id"], prefilled.initial["namespace_id"]) == ("99", "73")


def test_replay_finds_the_grants_an_id_binding_would_take_away(web_main_claims):
    """Proposed: bind web-main-deploy to project 20 in namespace 72. A grant to project 20 stays;
    the grant to a project re-created at platform/web (99) would now be refused; an event written
    before the audit kept namespace_id has none, so a namespace binding refuses it too."""
    web_main_deploy()
    same = AuditEventFactory(time=T0)
    recreated = AuditEventFactory(time=T0, project_id="99")
    older = AuditEventFactory(time=T0, namespace_id=None)
    assert "namespace_id" not in event_claims(older)
    assert replay_events(registry=Registry(registry_rules()), events=[same, recreated, older]) == []
    proposed = proposed_registry(proposed_file(project_id=20, namespace_id=72))
    changes = replay_events(registry=proposed, events=[same, recreated, older])
    assert [(c.event.pk, c.after) for c in changes] == [
        (recreated.pk, "denied (no_matching_mapping)"),
        (older.pk, "denied (no_matching_mapping)"),
    ]
    [failed] = [e.failed for e in changes[0].decision.evaluations]
    assert [(f.field, f.pattern, f.value) for f in failed] == [("project_id", "20", "99")]
