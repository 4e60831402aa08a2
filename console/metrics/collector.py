"""Gauges computed from the database at scrape time: the same in every process, so they are not
multiplied by the number of gunicorn workers and need no multiprocess files."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exchange.models import SigningKey
from mappings.models import Role


class DatabaseCollector:
    """Each role's trust policy size against its account's quota, roles by sync status, and the
    age of the signing key in use."""

    def collect(self) -> Iterator[Metric]:
        quota = GaugeMetricFamily(
            "rolegate_trust_policy_quota_ratio",
            "Each role's generated trust policy size (characters, as IAM counts them) as a fraction of its "
            "account's trust_policy_limit (ACLSizePerRole), as of its last sync.",
            labels=["account", "role"],
        )
        rows = Role.objects.filter(policy_size__isnull=False).values_list(
            "account__name", "name", "policy_size", "account__trust_policy_limit"
        )
        for account, role, size, limit in rows.order_by("account__name", "name"):
            if limit and size is not None:
                quota.add_metric([account, role], size / limit)
        yield quota

        roles = GaugeMetricFamily(
            "rolegate_roles", "Roles by the state of their trust-policy sync.", labels=["sync_status"]
        )
        counts = dict(Role.objects.values_list("sync_status").annotate(n=Count("id")).values_list("sync_status", "n"))
        for status in Role.SyncStatus.values:
            roles.add_metric([status], counts.get(status, 0))
        yield roles

        age = GaugeMetricFamily(
            "rolegate_signing_key_age_seconds",
            "Seconds since the signing key in use (state current) was created; rotate_signing_key starts a new one.",
        )
        created = SigningKey.objects.filter(state=SigningKey.State.CURRENT).values_list("created_at", flat=True).first()
        if created is not None:
            age.add_metric([], (timezone.now() - created).total_seconds())
        yield age
