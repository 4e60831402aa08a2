"""The dashboard: per-day counts, top reasons/projects/roles, sync problems, inline SVG charts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine

from console.dashboard import dashboard_data
from mappings.models import Role
from tests.console.factories import AuditEventFactory, denied
from tests.factories import RoleFactory

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def traffic():
    """Three granted and two denied today, one granted 29 days ago, one too old to count."""
    AuditEventFactory.create_batch(3, time=NOW - timedelta(hours=1))
    denied(time=NOW - timedelta(hours=2))
    denied(time=NOW - timedelta(hours=3), reason="token_expired", project_path="platform/api")
    AuditEventFactory(time=NOW - timedelta(days=29), role_arn="arn:aws:iam::123456789012:role/deploy-api")
    AuditEventFactory(time=NOW - timedelta(days=31))


def test_counts_per_day_cover_thirty_days_with_zeros(traffic):
    data = dashboard_data(now=NOW)
    assert len(data.days) == 30
    assert data.days[0].day == date(2026, 10, 28) and data.days[-1].day == date(2026, 11, 26)
    assert (data.days[-1].granted, data.days[-1].denied) == (3, 2)
    assert (data.days[0].granted, data.days[0].denied) == (1, 0)
    assert sum(d.granted + d.denied for d in data.days[1:-1]) == 0
    assert (data.granted, data.denied) == (4, 2)


def test_tops(traffic):
    data = dashboard_data(now=NOW)
    assert data.top_denial_reasons == [("no_matching_mapping", 1), ("token_expired", 1)]
    assert data.top_projects == [("platform/web", 4, 1), ("platform/api", 0, 1)]
    assert data.top_roles == [
        ("arn:aws:iam::123456789012:role/deploy-web", 3),
        ("arn:aws:iam::123456789012:role/deploy-api", 1),
    ]


def test_roles_with_sync_problems():
    failed = RoleFactory(name="broken", sync_status=Role.SyncStatus.FAILED, last_error="AccessDenied")
    drifted = RoleFactory(name="drifted", sync_status=Role.SyncStatus.DRIFT, drift=True)
    RoleFactory(name="fine", sync_status=Role.SyncStatus.IN_SYNC)
    assert {r.pk for r in dashboard_data(now=NOW).roles_with_problems} == {failed.pk, drifted.pk}


def test_pending_roles_are_counted_not_called_in_sync(client, staff):
    """Without a broker every registry change leaves roles pending until someone syncs: the
    dashboard says so instead of claiming every role is in sync."""
    RoleFactory(name="waiting", sync_status=Role.SyncStatus.PENDING)
    RoleFactory(name="fine", sync_status=Role.SyncStatus.IN_SYNC)
    data = dashboard_data(now=NOW)
    assert (data.roles_with_problems, data.roles_pending) == ([], 1)
    client.force_login(staff)
    page = client.get("/admin/rolegate/dashboard/").content.decode()
    assert "1 role pending" in page and "sync_iam" in page and "?sync_status__exact=pending" in page
    assert client.get("/admin/mappings/role/", {"sync_status__exact": "pending"}).context["cl"].result_count == 1


def test_a_constant_number_of_queries_however_many_events(django_assert_max_num_queries):
    for i in range(50):
        AuditEventFactory(time=NOW - timedelta(days=i % 30, minutes=1), project_path=f"p/{i % 13}")
    with django_assert_max_num_queries(5):
        dashboard_data(now=NOW)


def test_page_is_staff_only_and_renders_inline_svg(client, staff, traffic):
    RoleFactory(name="broken", sync_status=Role.SyncStatus.FAILED, last_error="AccessDenied: not allowed")
    assert client.get("/admin/rolegate/dashboard/").status_code == 302
    client.force_login(staff)
    with time_machine.travel(NOW, tick=False):
        page = client.get("/admin/rolegate/dashboard/").content.decode()
    assert page.count("<svg") >= 4
    assert page.count('class="granted"') == 2  # two days with grants
    assert page.count('class="denied"') == 1
    assert "no_matching_mapping" in page and "platform/api" in page
    assert "AccessDenied: not allowed" in page
    assert "http://" not in page.split("<svg", 1)[1].split("</svg>")[0].replace("http://www.w3.org/2000/svg", "")


def test_dashboard_is_linked_from_the_admin_index(client, staff):
    client.force_login(staff)
    page = client.get("/admin/").content.decode()
    console = page.split('id="rolegate-console"', 1)[1].split("</table>", 1)[0]
    for url in ("/admin/rolegate/dashboard/", "/admin/exchange/auditevent/", "/admin/rolegate/explain/"):
        assert url in console
    assert "/admin/rolegate/replay/" in console


def test_chart_labels_are_escaped():
    from console.charts import horizontal_bars

    svg = horizontal_bars([("<script>alert(1)</script>", 3)], title="t")
    assert "<script>" not in svg and "&lt;script&gt;" in svg


@pytest.mark.parametrize(
    ("url", "perms"),
    [
        ("/admin/rolegate/dashboard/", ["view_auditevent"]),
        ("/admin/rolegate/explain/", ["view_mapping"]),
        ("/admin/rolegate/replay/", ["view_auditevent", "view_mapping"]),
    ],
)
def test_console_pages_need_the_permission_of_what_they_show(client, url, perms):
    from django.contrib.auth.models import Permission

    from tests.console.factories import UserFactory

    user = UserFactory(username="helpdesk", is_staff=True)
    client.force_login(user)
    assert client.get(url).status_code == 403
    user.user_permissions.set(Permission.objects.filter(codename__in=perms))
    assert client.get(url).status_code == 200
