"""rolegate_iam_role_syncs counts role syncs by outcome (docs/operations.md "Metrics")."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from mappings.iam import tasks
from tests.iam.helpers import ROLEGATE, create_iam_role, registry

pytestmark = pytest.mark.django_db


def syncs(outcome: str) -> float:
    return REGISTRY.get_sample_value("rolegate_iam_role_syncs_total", {"outcome": outcome}) or 0.0


def test_role_syncs_are_counted_by_outcome_and_dry_runs_are_not(moto_aws, settings):
    settings.ROLEGATE_ISSUER = ROLEGATE
    _, account, [role, _missing] = registry(roles=("deploy-web", "missing"))
    create_iam_role("deploy-web")
    before = {outcome: syncs(outcome) for outcome in ("updated", "unchanged", "failed")}

    tasks.sync_account.apply(kwargs={"account_id": account.pk}).get()  # deploy-web written, "missing" absent
    tasks.sync_role.apply(kwargs={"role_id": role.pk}).get()
    tasks.sync_role.apply(kwargs={"role_id": role.pk, "dry_run": True}).get()

    assert syncs("updated") - before["updated"] == 1
    assert syncs("unchanged") - before["unchanged"] == 1
    assert syncs("failed") - before["failed"] == 1
