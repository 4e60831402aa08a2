"""The Celery worker's own GET /metrics (portal.worker_metrics, docs/operations.md "Metrics"): a
real prefork worker on Redis syncs a role against a moto server, and a scrape of the worker's
endpoint shows the syncs counted in its pool's children (PostgreSQL, Redis)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from mappings.models import Role
from tests.iam.helpers import ROLEGATE, create_iam_role, registry
from tests.iam.worker_harness import broker_url, running_worker, wait_for, worker_environment
from tests.services import free_port, require_postgresql, wait_for_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
TOKEN = "worker-scrape-secret-0123456789"
FOLDER_PREFIX = "rolegate-worker-metrics-"


def listening_processes(port: int) -> set[int]:
    """The processes holding the socket that listens on ``port`` (Linux: /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rpartition(":")[2], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    holders = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                links = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
            except OSError:  # gone, or not ours to read
                continue
            if links & inodes:
                holders.add(int(proc.name))
    return holders


def syncs(body: str) -> dict[str, float]:
    return {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == "rolegate_iam_role_syncs_total"
    }


@pytest.fixture
def broker():
    """Checked before the moto server starts, so a laptop without the services skips at once."""
    require_postgresql()
    return broker_url(local_db=5)


@pytest.fixture
def metrics_worker(broker, moto_server, tmp_path):
    """A prefork worker of two children, each replaced after one task, serving its metrics on a
    free port of 127.0.0.1 to scrapes with the token; its temporary folder is ``tmp_path/tmp``."""
    port = free_port()
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {
        **worker_environment(broker, moto_server),
        "ROLEGATE_WORKER_METRICS_PORT": str(port),
        "ROLEGATE_WORKER_METRICS_ADDRESS": "127.0.0.1",
        "ROLEGATE_METRICS_TOKEN": TOKEN,
        "TMPDIR": str(temporary),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = tmp_path / "worker.log"
    pool = ("--pool=prefork", "--concurrency=2", "--max-tasks-per-child=1")
    with running_worker(env, log, pool) as (client, queue, process):
        wait_for_port("127.0.0.1", port, process=process, what="the worker's metrics server", timeout=60)
        yield client, queue, process, log, f"http://127.0.0.1:{port}/metrics", temporary
    assert not list(temporary.glob(FOLDER_PREFIX + "*")), "the worker left its metrics folder behind"


def test_a_scrape_of_the_worker_shows_the_syncs_its_children_counted(metrics_worker, settings):
    client, queue, process, log, url, temporary = metrics_worker
    settings.ROLEGATE_ISSUER = ROLEGATE
    _, account, [role] = registry()
    create_iam_role(role.name)

    assert requests.get(url, timeout=10).status_code == 403  # the web's check: the token is required
    before = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert before.status_code == 200 and before.headers["Content-Type"].startswith("text/plain; version=")
    assert syncs(before.text) == {}  # nothing counted yet

    # Two tasks, two processes (each child runs one task and is replaced): the first writes the
    # trust policy, the second finds it unchanged.
    client.send_task("mappings.tasks.sync_account", kwargs={"account_id": account.pk}, queue=queue)
    wait_for(lambda: Role.objects.get(pk=role.pk).sync_status == Role.SyncStatus.IN_SYNC, process=process, log=log)
    client.send_task("mappings.tasks.sync_role", kwargs={"role_id": role.pk}, queue=queue)

    def scraped() -> dict[str, float]:
        return syncs(requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).text)

    wait_for(lambda: scraped().get("unchanged"), process=process, log=log)
    assert scraped() == {"updated": 1.0, "unchanged": 1.0}

    [folder] = temporary.glob(FOLDER_PREFIX + "*")
    counting = {int(f.stem.rpartition("_")[2]) for f in folder.glob("counter_*.db")}
    children = counting - {process.pid}
    assert len(children) >= 2, f"the syncs were not counted in two pool children: {sorted(counting)}"
    # A child that exited (replaced after its one task) still counts: its counts happened.
    wait_for(lambda: any(not os.path.exists(f"/proc/{pid}") for pid in children), process=process, log=log)
    assert scraped() == {"updated": 1.0, "unchanged": 1.0}
    # The children forked since the server started closed their copy of its socket (a child
    # being forked this instant may hold it for microseconds: hence a wait, not an assert).
    port = urlsplit(url).port
    wait_for(lambda: listening_processes(port) == {process.pid}, process=process, log=log, timeout=10)
