"""Explain/simulate and replay in the admin."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from console.replay import event_claims, replay_events
from mappings import services
from mappings.matching import Registry
from mappings.selectors import registry_rules
from tests.console.factories import AuditEventFactory, denied, explain_form, proposed_file
from tests.factories import AccountFactory, IssuerFactory, RoleFactory, web_main_deploy

pytestmark = pytest.mark.django_db
EXPLAIN = "/admin/rolegate/explain/"
REPLAY = "/admin/rolegate/replay/"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


@pytest.fixture
def web_mapping(db):
    """web-main-deploy: platform/web, protected branch main -> prod/deploy-web."""
    return web_main_deploy()


def test_explain_form_grants_the_protected_main_job(admin_client, web_mapping):
    response = admin_client.post(EXPLAIN, explain_form())
    explanation = response.context["result"]["explanation"]
    assert explanation.decision.granted
    assert 'id="decision" class="granted"' in response.content.decode()


def test_explain_form_shows_the_first_failing_condition(admin_client, web_mapping):
    response = admin_client.post(EXPLAIN, explain_form(ref="feature/x", protected=None))
    page = response.content.decode()
    assert 'id="decision" class="denied"' in page
    [evaluation] = response.context["result"]["explanation"].evaluations
    assert evaluation.failed[0].field == "ref"
    assert "ref: pattern <code>main</code>, job has <code>feature/x</code>" in page
    assert f'<a href="/admin/mappings/mapping/{web_mapping.pk}/change/">web-main-deploy</a>' in page


def test_explain_says_when_a_mapping_matches_for_another_role(admin_client, web_mapping):
    page = admin_client.post(EXPLAIN, explain_form(role_arn="arn:aws:iam::123456789012:role/other")).content.decode()
    assert 'id="decision" class="denied"' in page and "matches, for another role" in page


def _token(claims) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "someone-elses"})


def test_pasted_token_is_decoded_without_trust_and_never_echoed_or_logged(
    admin_client, web_mapping, feature_mr_claims, caplog
):
    token = _token(feature_mr_claims)  # signed by a key Rolegate has never seen; expired long ago
    with caplog.at_level(logging.DEBUG):
        response = admin_client.post(EXPLAIN, explain_form(issuer="", project_path="", ref="", token=token))
    assert response.status_code == 200
    result = response.context["result"]
    assert result["claims"]["ref"] == feature_mr_claims["ref"]
    assert not result["explanation"].decision.granted
    assert token not in response.content.decode()
    assert token.split(".")[2] not in caplog.text and token not in caplog.text


def test_unreadable_token_and_unknown_iss_are_form_errors(admin_client, web_mapping, web_main_claims):
    page = admin_client.post(EXPLAIN, explain_form(token="not.a.jwt")).content.decode()
    assert "not a readable JWT" in page
    other = _token({**web_main_claims, "iss": "https://gitlab.elsewhere.example"})
    page = admin_client.post(EXPLAIN, explain_form(issuer="", token=other)).content.decode()
    assert "No registered issuer" in page


def test_explain_page_needs_staff(client, web_mapping):
    assert client.get(EXPLAIN).status_code == 302


def test_replay_lists_only_decisions_that_change(web_mapping, web_main_claims):
    """Proposed: web-main-deploy also allows unprotected refs -> the refused unprotected job would
    now be granted; the granted protected job is unchanged; an expired-token refusal is ignored."""
    granted = AuditEventFactory(time=T0)
    unprotected = denied(time=T0, ref="main", ref_protected="false", requested_role_arn=None)
    denied(time=T0, reason="token_expired", ref="main", ref_protected="false")
    proposed = [
        r.__class__(**{**{f: getattr(r, f) for f in r.__slots__}, "protected": False}) for r in registry_rules()
    ]
    changes = replay_events(registry=Registry(proposed), events=[granted, unprotected])
    assert [c.event.pk for c in changes] == [unprotected.pk]
    assert changes[0].before == "denied (no_matching_mapping)"
    assert changes[0].after.startswith("granted arn:aws:iam::123456789012:role/deploy-web via web-main-deploy")


def test_replay_with_the_current_registry_changes_nothing(web_mapping):
    events = [AuditEventFactory(time=T0), denied(time=T0, requested_role_arn=None)]
    assert replay_events(registry=Registry(registry_rules()), events=events) == []


def test_replay_flags_a_removed_mapping(web_mapping):
    event = AuditEventFactory(time=T0)
    [change] = replay_events(registry=Registry([]), events=[event])
    assert change.after == "denied (no_matching_mapping)"


def test_event_claims_leave_absent_claims_absent():
    claims = event_claims(AuditEventFactory.build(environment=None))
    assert "environment" not in claims and claims["project_path"] == "platform/web"


def test_replay_page_needs_a_configuration(admin_client):
    page = admin_client.post(REPLAY, {"config": "", "days": 7}).content.decode()
    assert "Paste or upload a configuration file." in page


def test_replay_events_since(web_mapping):
    from console.replay import replayable_events

    AuditEventFactory(time=T0 - timedelta(days=10))
    recent = AuditEventFactory(time=T0 - timedelta(days=1))
    denied(time=T0, reason="bad_signature")
    assert [e.pk for e in replayable_events(days=7, now=T0)] == [recent.pk]


def test_replay_page_runs_a_proposed_file_against_recent_events(admin_client, web_mapping):
    now = datetime.now(UTC)
    AuditEventFactory(time=now - timedelta(hours=1))
    unprotected = denied(time=now - timedelta(hours=2), ref="main", ref_protected="false", requested_role_arn=None)
    denied(time=now - timedelta(days=9), ref="main", ref_protected="false", requested_role_arn=None)  # too old
    response = admin_client.post(REPLAY, {"config": proposed_file(protected=False), "days": 7})
    result = response.context["result"]
    assert result["replayed"] == 2 and not result["capped"]
    assert result["total"] == 1
    assert result["changes"][0].event.pk == unprotected.pk
    assert "granted arn:aws:iam::123456789012:role/deploy-web via web-main-deploy" in response.content.decode()


def test_replay_page_accepts_an_upload_and_reports_no_change(admin_client, web_mapping):
    from django.core.files.uploadedfile import SimpleUploadedFile

    AuditEventFactory(time=datetime.now(UTC) - timedelta(hours=1))
    upload = SimpleUploadedFile("rolegate.yaml", proposed_file().encode())
    response = admin_client.post(REPLAY, {"config_file": upload, "days": 7})
    assert response.context["result"]["total"] == 0
    assert "No decision would change." in response.content.decode()


def test_replay_page_names_each_error_of_an_invalid_file(admin_client):
    bad = proposed_file(ref_type="sideways")
    page = admin_client.post(REPLAY, {"config": bad, "days": 7}).content.decode()
    assert "mappings[0].ref_type" in page
    assert admin_client.post(REPLAY, {"config": "issuers: [", "days": 7}).context["result"] is None


def test_explain_shows_that_iam_would_allow_the_minted_token(admin_client, web_mapping):
    response = admin_client.post(EXPLAIN, explain_form())
    [verdict] = response.context["result"]["iam"]
    assert verdict.allowed is True
    assert verdict.mapping == "web-main-deploy"
    assert "allows the token Rolegate would mint" in verdict.detail
    assert 'class="iam-verdict"' in response.content.decode()


def test_iam_also_denies_a_refused_job_for_the_requested_role(admin_client, web_mapping):
    """Defence in depth: the unprotected ref is refused by the matcher and by the trust policy."""
    response = admin_client.post(EXPLAIN, explain_form(protected=None, role_arn=web_mapping.role.arn))
    assert not response.context["result"]["explanation"].decision.granted
    [verdict] = response.context["result"]["iam"]
    assert verdict.allowed is False


def test_iam_verdict_for_a_direct_mode_account(admin_client, db):
    role = RoleFactory(account=AccountFactory(name="sandbox", account_id="345678901234", mode="direct"), name="exp")
    services.mapping_create(
        actor="test", name="sandbox-exp", issuer=IssuerFactory(), role=role, project="platform/web", ref="main"
    )
    response = admin_client.post(EXPLAIN, explain_form(role_arn=role.arn))
    assert response.context["result"]["explanation"].decision.reason == "direct_mode_account"
    [verdict] = response.context["result"]["iam"]
    assert verdict.allowed is True and "GitLab token sent to STS directly" in verdict.detail


def test_pasted_token_is_hidden_from_error_reports(rf, staff):
    from django.views.debug import SafeExceptionReporterFilter

    from console.admin_views import explain

    request = rf.post(EXPLAIN, {"token": "eyJ.secret.token"})
    request.user = staff
    explain(request)
    assert SafeExceptionReporterFilter().get_post_parameters(request)["token"] != "eyJ.secret.token"
