"""The demo configuration and the development admin user that ``make run`` creates."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command
from django.test import RequestFactory, override_settings

from mappings.matching import decide
from mappings.selectors import registry

pytestmark = pytest.mark.django_db

DEMO = Path(__file__).resolve().parents[2] / "demo" / "rolegate.yaml"
PROD = "arn:aws:iam::123456789012:role/"
# django-axes checks every login against its request (client address + username).
LOGIN_REQUEST = RequestFactory().post("/admin/login/")


def demo_admin() -> str:
    out = io.StringIO()
    call_command("demo_admin", stdout=out)
    return out.getvalue()


@override_settings(DEBUG=True)
def test_demo_admin_creates_then_resets_a_superuser_with_a_random_password():
    first = demo_admin()
    assert "/admin/" in first
    password = re.search(r"password: (\S+)", first).group(1)
    user = authenticate(LOGIN_REQUEST, username="admin", password=password)
    assert user is not None and user.is_superuser and user.is_staff
    second = demo_admin()
    new_password = re.search(r"password: (\S+)", second).group(1)
    assert new_password != password
    assert authenticate(LOGIN_REQUEST, username="admin", password=password) is None
    assert authenticate(LOGIN_REQUEST, username="admin", password=new_password) is not None


@override_settings(DEBUG=False)
def test_demo_admin_refuses_outside_development_mode():
    with pytest.raises(CommandError, match="DJANGO_DEBUG=1"):
        demo_admin()
    from django.contrib.auth import get_user_model

    assert not get_user_model().objects.exists()


def test_demo_configuration_grants_the_fixture_personas(web_main_claims, api_production_claims, feature_mr_claims):
    from datetime import UTC, datetime

    call_command("apply", str(DEMO), stdout=io.StringIO())
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    snapshot = registry()

    def decision(claims, role):
        return decide(snapshot, issuer="gitlab-example", claims=claims, now=now, role_arn=PROD + role)

    web = decision(web_main_claims, "deploy-web")
    assert web.granted and web.rule.name == "web-main-deploy"
    api = decision(api_production_claims, "deploy-api")
    assert api.granted and api.rule.name == "api-production-deploy"
    assert not decision(feature_mr_claims, "deploy-web").granted


def demo_audit() -> str:
    out = io.StringIO()
    call_command("demo_audit", stdout=out)
    return out.getvalue()


@override_settings(DEBUG=True)
def test_demo_audit_writes_labelled_decisions_of_the_real_matcher_and_replaces_them():
    from exchange.models import AuditEvent
    from tests.console.factories import AuditEventFactory

    call_command("apply", str(DEMO), stdout=io.StringIO())
    AuditEventFactory(request_id="real-1")
    demo_audit()
    first = set(AuditEvent.objects.filter(request_id__startswith="demo-").values_list("pk", flat=True))
    demo_audit()
    events = AuditEvent.objects.filter(request_id__startswith="demo-")
    assert not first & set(events.values_list("pk", flat=True))  # replaced, not added to
    assert AuditEvent.objects.filter(request_id="real-1").exists()  # other events are left alone
    assert set(events.values_list("user_agent", flat=True)) == {"rolegate demo data"}
    assert all(ip.startswith("192.0.2.") for ip in events.values_list("client_ip", flat=True))
    # The decisions are the matcher's on the demo configuration.
    web = events.filter(project_path="platform/web", ref="main", outcome="granted")
    assert set(web.values_list("mapping", flat=True)) == {"web-main-deploy"}
    merge_requests = events.filter(pipeline_source="merge_request_event")
    assert set(merge_requests.values_list("reason", flat=True)) == {"no_matching_mapping"}
    migration = events.filter(ref__startswith="migration/")  # api-migration-2025 has expired
    assert migration.exists() and set(migration.values_list("outcome", flat=True)) == {"denied"}
    assert {"token_expired", "bad_signature", "replay"} <= set(events.values_list("reason", flat=True))


@override_settings(DEBUG=False)
def test_demo_audit_refuses_outside_development_mode():
    from exchange.models import AuditEvent

    with pytest.raises(CommandError, match="DJANGO_DEBUG=1"):
        demo_audit()
    assert not AuditEvent.objects.exists()
