"""What a platform lead looks at first: aggregate reads for the dashboard (a few GROUP BY queries)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from exchange.models import AuditEvent
from mappings.models import Role

DAYS = 30
TOP = 10


@dataclass(frozen=True)
class DayCount:
    day: date
    granted: int
    denied: int


@dataclass(frozen=True)
class Dashboard:
    since: datetime
    days: list[DayCount]
    top_denial_reasons: list[tuple[str, int]]
    top_projects: list[tuple[str, int, int]]  # project, granted, denied
    top_roles: list[tuple[str, int]]  # role ARN, granted
    roles_with_problems: list[Role]
    roles_pending: int = 0  # changed mappings not yet written to IAM

    @property
    def granted(self) -> int:
        return sum(d.granted for d in self.days)

    @property
    def denied(self) -> int:
        return sum(d.denied for d in self.days)


def dashboard_data(*, now: datetime | None = None, days: int = DAYS) -> Dashboard:
    now = now or timezone.now()
    today = timezone.localdate(now)
    first_day = today - timedelta(days=days - 1)
    since = datetime.combine(first_day, datetime.min.time(), tzinfo=timezone.get_current_timezone())
    events = AuditEvent.objects.filter(time__gte=since)

    per_day: dict[date, dict[str, int]] = {}
    rows = (
        events.annotate(day=TruncDate("time"))
        .values("day")
        .annotate(granted=Count("id", filter=Q(outcome="granted")), denied=Count("id", filter=Q(outcome="denied")))
        .order_by()
    )
    for row in rows:
        per_day[row["day"]] = {"granted": row["granted"], "denied": row["denied"]}
    day_counts = [
        DayCount(day, per_day.get(day, {}).get("granted", 0), per_day.get(day, {}).get("denied", 0))
        for day in (first_day + timedelta(days=i) for i in range(days))
    ]

    reasons = events.filter(outcome="denied").values("reason").annotate(n=Count("id")).order_by("-n", "reason")[:TOP]
    projects = (
        events.exclude(project_path=None)
        .values("project_path")
        .annotate(
            n=Count("id"),
            granted=Count("id", filter=Q(outcome="granted")),
            denied=Count("id", filter=Q(outcome="denied")),
        )
        .order_by("-n", "project_path")[:TOP]
    )
    roles = (
        events.filter(outcome="granted")
        .exclude(role_arn=None)
        .values("role_arn")
        .annotate(n=Count("id"))
        .order_by("-n", "role_arn")[:TOP]
    )
    failing = [Role.SyncStatus.FAILED, Role.SyncStatus.DRIFT]
    flagged = list(
        Role.objects.filter(Q(sync_status__in=[*failing, Role.SyncStatus.PENDING]) | Q(drift=True) | ~Q(last_error=""))
        .select_related("account")
        .order_by("account__name", "name")
    )
    return Dashboard(
        since=since,
        days=day_counts,
        top_denial_reasons=[(r["reason"], r["n"]) for r in reasons],
        top_projects=[(str(p["project_path"]), p["granted"], p["denied"]) for p in projects],  # None excluded
        top_roles=[(str(r["role_arn"]), r["n"]) for r in roles],  # None excluded
        roles_with_problems=[r for r in flagged if r.sync_status in failing or r.drift or r.last_error],
        roles_pending=sum(1 for role in flagged if role.sync_status == Role.SyncStatus.PENDING),
    )
