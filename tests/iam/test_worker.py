"""A real Celery worker on Redis runs a sync end to end (PostgreSQL, moto server).

The worker is a separate process with the production settings module (not eager), reading the
test database; tasks go to a queue of its own so nothing else picks them up.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from mappings import policies
from mappings.iam import selectors
from mappings.models import Account, Role
from tests import command_runner
from tests.iam.helpers import ROLEGATE, create_iam_role, live_policy, registry
from tests.iam.worker_harness import ROOT, broker_url, running_worker, wait_for, worker_environment
from tests.services import require_postgresql

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def broker():
    """Checked before the moto server starts, so a laptop without the services skips at once."""
    require_postgresql()
    return broker_url(local_db=3)


@pytest.fixture
def worker_env(broker, moto_server) -> dict[str, str]:
    return worker_environment(broker, moto_server)


@pytest.fixture
def worker(worker_env, tmp_path):
    log = tmp_path / "worker.log"
    with running_worker(worker_env, log) as (client, queue, process):
        yield client, queue, process, log


def test_a_real_worker_syncs_an_account(worker, settings):
    client, queue, process, log = worker
    settings.ROLEGATE_ISSUER = ROLEGATE
    _, account, [role] = registry()
    create_iam_role(role.name)

    client.send_task("mappings.tasks.sync_account", kwargs={"account_id": account.pk}, queue=queue)
    wait_for(lambda: Role.objects.get(pk=role.pk).sync_status == Role.SyncStatus.IN_SYNC, process=process, log=log)
    account.refresh_from_db()
    assert account.provider_status == Account.SyncStatus.IN_SYNC
    role.refresh_from_db()
    desired = selectors.role_desired_policy(role)
    assert policies.same_policy(live_policy(role.name), desired.document)
    assert role.live_policy_sha256 == desired.sha256


def test_sync_iam_with_a_broker_runs_on_the_worker(worker, worker_env, settings):
    """docs/commands.md#sync_iam: sync_iam goes through the same tasks the worker runs; with a broker set, the
    worker runs them and the command prints their results."""
    _, _, _, log = worker
    settings.ROLEGATE_ISSUER = ROLEGATE
    _, account, [role] = registry()
    create_iam_role(role.name)

    def sync_iam(*args: str) -> subprocess.CompletedProcess:
        return command_runner.manage("sync_iam", "--timeout", "60", *args, env=worker_env, cwd=ROOT, timeout=120)

    first = sync_iam()
    assert first.returncode == 0, first.stdout + first.stderr + log.read_text()[-3000:]
    assert first.stdout.splitlines() == [
        f"provider {account.name}/rolegate.example.com: created",
        f"role {account.name}/{role.name}: updated",
        "synced 2: 1 created, 1 updated",
    ]
    assert "sync_account" in log.read_text()  # the worker ran it, not the command's own process
    assert policies.same_policy(live_policy(role.name), selectors.role_desired_policy(role).document)

    check = sync_iam("--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.splitlines()[-1] == "checked 2: 2 unchanged"


def test_sync_iam_with_a_broker_and_no_worker_says_so(worker_env):
    _, account, _ = registry()
    result = command_runner.manage("sync_iam", "--timeout", "2", env=worker_env, cwd=ROOT)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"CommandError: No worker synced account {account.name!r} within 2 s; is `celery -A portal worker` "
        "running on this broker?"
    ]


def test_an_expiring_mapping_leaves_iam_on_time_through_the_eta_sync(worker, worker_env, settings):
    """The registry's own write path (in a process with the broker set) queues the sync for the
    moment the mapping expires; the worker runs it then. Prints the lag measured."""
    from datetime import UTC, datetime

    from mappings import iam_eval

    _, _, process, log = worker
    settings.ROLEGATE_ISSUER = ROLEGATE
    _, _, [role] = registry()
    create_iam_role(role.name)
    expires = datetime.fromtimestamp(int(time.time()) + 12, tz=UTC)
    code = (
        "import datetime; from mappings import services; from mappings.models import Issuer, Role; "
        "services.mapping_create(actor='test', name='temp', issuer=Issuer.objects.get(), role=Role.objects.get(), "
        f"project='platform/temp', ref='main', expires_at=datetime.datetime.fromisoformat('{expires.isoformat()}'))"
    )
    written = command_runner.manage("shell", "-c", code, env=worker_env, cwd=ROOT)
    assert written.returncode == 0, written.stdout + written.stderr

    def trusts_temp() -> bool:
        claims = {
            "project_path": "platform/temp",
            "ref": "main",
            "ref_type": "branch",
            "ref_protected": "false",
            "pipeline_source": "push",
            "namespace_path": "platform",
        }
        return iam_eval.minted_token_allowed(
            live_policy(role.name),
            rolegate_issuer=ROLEGATE,
            account_id="123456789012",
            audience="sts.amazonaws.com",
            issuer_name="gitlab-com",
            claims=claims,
            mapping_name="m",
            session_tags=True,
            role_name=role.name,
        )

    wait_for(trusts_temp, process=process, log=log, timeout=60)  # the sync queued by the write
    assert time.time() < expires.timestamp(), "the first sync came too late to show the expiry"
    wait_for(lambda: not trusts_temp(), process=process, log=log, timeout=90)
    lag = time.time() - expires.timestamp()
    print(f"IAM stopped trusting the expired mapping {lag:.1f} s after its expires_at")
    assert lag < 60
