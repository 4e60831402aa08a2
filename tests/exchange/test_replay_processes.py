"""Replay protection across processes: two gunicorn servers on the same PostgreSQL database each
receive the same tokens at the same moment; each token is granted exactly once per role."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection

from exchange.models import AuditEvent, UsedToken
from tests.exchange import cases
from tests.exchange.conftest import exchange_params
from tests.exchange.servers import RolegateServer
from tests.services import free_port, require_postgresql

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_replay_is_refused_across_two_server_processes(stand_in, web_main_claims):
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
    try:
        for server in servers:
            server.wait_ready()
        tokens = [stand_in.mint(stand_in.claims(web_main_claims)) for _ in range(10)]

        def post(args):
            server, token = args
            response = requests.post(
                f"{server.url}/api/v1/token", data=exchange_params(token, cases.DEPLOY_WEB), timeout=10
            )
            return token, response.status_code, response.json()

        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(post, [(server, token) for token in tokens for server in servers]))
    finally:
        for server in servers:
            server.stop()

    for token in tokens:
        statuses = sorted(status for t, status, _ in results if t == token)
        assert statuses == [200, 400], statuses
        (refusal,) = [body for t, status, body in results if t == token and status == 400]
        assert refusal["error"] == "invalid_grant"
        assert AuditEvent.objects.get(request_id=refusal["request_id"]).reason == "replay"
    assert AuditEvent.objects.filter(outcome="granted").count() == 10
    assert AuditEvent.objects.filter(reason="replay").count() == 10
    assert UsedToken.objects.count() == 10
