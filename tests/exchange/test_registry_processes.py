"""Registry changes are seen by every server process at once: two gunicorn servers on the same
PostgreSQL database each hold a registry snapshot; a mapping removed through the services is
refused by both on the very next request (each patches its snapshot from the change log)."""

from __future__ import annotations

import pytest
import requests
from django.db import connection

from exchange.models import AuditEvent
from mappings import services
from mappings.models import Mapping
from tests.exchange import cases
from tests.exchange.conftest import exchange_params
from tests.exchange.servers import RolegateServer
from tests.services import free_port, require_postgresql

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_removed_mapping_is_refused_by_every_process_on_the_next_request(stand_in, web_main_claims):
    require_postgresql()
    cases.build_registry(stand_in.url)
    db = connection.settings_dict
    env = {
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}",
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "ROLEGATE_RATE_LIMIT": "0",
    }
    servers = [RolegateServer(port=free_port(), env=env) for _ in range(2)]

    def post(server):
        token = stand_in.mint(stand_in.claims(web_main_claims))
        return requests.post(f"{server.url}/api/v1/token", data=exchange_params(token, cases.DEPLOY_WEB), timeout=10)

    try:
        for server in servers:
            server.wait_ready()
        assert [post(server).status_code for server in servers] == [200, 200]  # both hold a snapshot
        for mapping in Mapping.objects.filter(role__name="deploy-web"):
            services.registry_delete(mapping, actor="test")
        refused = [post(server) for server in servers]
    finally:
        for server in servers:
            server.stop()
    assert [response.status_code for response in refused] == [400, 400]
    for response in refused:
        assert AuditEvent.objects.get(request_id=response.headers["X-Request-ID"]).reason == "no_matching_mapping"
