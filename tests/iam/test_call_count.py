"""How many IAM calls a sync makes after one mapping changed (the figure in the issue's closing
note comes from ``ROLEGATE_IAM_CALLS_ROLES=1000``; the suite runs a small registry)."""

from __future__ import annotations

import io
import os

import pytest
from django.core.management import call_command

from mappings import services
from mappings.iam import aws_iam
from mappings.iam import services as iam_services
from mappings.models import Mapping, Role
from tests.iam.helpers import ROLEGATE, CallCounter, create_iam_role, registry

pytestmark = pytest.mark.django_db
ROLES = int(os.environ.get("ROLEGATE_IAM_CALLS_ROLES", "30"))


def test_iam_calls_after_one_mapping_changed(moto_aws, settings, capsys):
    settings.ROLEGATE_ISSUER = ROLEGATE
    issuer, account, [first] = registry()
    roles = Role.objects.bulk_create(Role(account=account, name=f"r{i:04d}") for i in range(ROLES - 1))
    Mapping.objects.bulk_create(
        Mapping(name=f"m{i:04d}", issuer=issuer, role=role, project=f"g/p{i}") for i, role in enumerate(roles)
    )
    for role in [first, *roles]:
        create_iam_role(role.name)
    call_command("sync_iam", stdout=io.StringIO())

    services.registry_update(first.mappings.get(), actor="test", ref="release/*")
    counter = CallCounter(aws_iam.iam_client())
    iam_services.role_sync(role_id=first.pk)  # what the change schedules: one task for the touched role
    scheduled = list(counter.calls)
    assert scheduled == ["GetRole", "UpdateAssumeRolePolicy"]

    services.registry_update(first.mappings.get(), actor="test", ref="hotfix/*")
    counter.calls.clear()
    out = io.StringIO()
    call_command("sync_iam", stdout=out)  # a full sync (drift scan, sync_iam)
    summary = out.getvalue().splitlines()[-1]
    assert summary == f"synced {ROLES + 1}: {ROLES} unchanged, 1 updated"
    assert counter.count("GetRole") == ROLES
    assert counter.count("UpdateAssumeRolePolicy") == 1
    assert counter.count("GetOpenIDConnectProvider") == 1
    with capsys.disabled():
        print(
            f"\nIAM calls with {ROLES} roles, one mapping changed: scheduled sync {len(scheduled)}, "
            f"full sync {len(counter.calls)} ({sorted(set(counter.calls))})"
        )
