"""Registry changes are seen by every server process at once: two gunicorn servers on the same
PostgreSQL database each hold a registry snapshot; a mapping removed, or a change to its role or
account, through the services decides both servers' very next request (each patches its snapshot
from the change log)."""

from __future__ import annotations

import jwt
import pytest
import requests
from django.db import connection

from exchange.models import AuditEvent
from mappings import services
from mappings.models import Account, Mapping, Role
from tests.exchange import cases
from tests.exchange.conftest import exchange_params
from tests.exchange.servers import RolegateServer
from tests.services import free_port, require_postgresql

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def servers_env() -> dict[str, str]:
    db = connection.settings_dict
    return {
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}",
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "ROLEGATE_RATE_LIMIT": "0",
    }


def test_a_removed_mapping_is_refused_by_every_process_on_the_next_request(stand_in, web_main_claims):
    require_postgresql()
    cases.build_registry(stand_in.url)
    servers = [RolegateServer(port=free_port(), env=servers_env()) for _ in range(2)]

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


def test_a_role_or_account_change_decides_every_process_next_request(stand_in, web_main_claims):
    """The role of the web team's mapping (protected refs, so its trust needs session tags): its
    account's audience changed, its session tags turned off and on, its account put in direct
    mode and back, the role deleted -- each seen by both servers on their next request."""
    require_postgresql()
    cases.build_registry(stand_in.url)
    role = Role.objects.get(name="deploy-web")
    account = role.account
    # A mapping bound by project id alone keeps its account out of direct mode (IAM could not
    # see the id there): this scenario puts the account in direct mode, so it goes first.
    for mapping in Mapping.objects.filter(role__account=account, project="*"):
        services.registry_delete(mapping, actor="test")
    servers = [RolegateServer(port=free_port(), env=servers_env()) for _ in range(2)]

    def outcomes() -> list[tuple[str, str | None]]:
        """Each server's reason, and the audience of the token it minted."""
        found = []
        for server in servers:
            token = stand_in.mint(stand_in.claims(web_main_claims))
            response = requests.post(
                f"{server.url}/api/v1/token", data=exchange_params(token, cases.DEPLOY_WEB), timeout=10
            )
            minted = response.json().get("access_token")
            audience = jwt.decode(minted, options={"verify_signature": False})["aud"] if minted else None
            found.append((AuditEvent.objects.get(request_id=response.headers["X-Request-ID"]).reason, audience))
        return found

    steps = [
        (lambda: None, ("granted", cases.STS_AUDIENCE)),  # both hold a snapshot
        (lambda: services.registry_update(account, actor="test", audience="other"), ("granted", "other")),
        (lambda: services.registry_update(role, actor="test", session_tags=False), ("no_matching_mapping", None)),
        (lambda: services.registry_update(role, actor="test", session_tags=True), ("granted", "other")),
        (
            lambda: services.registry_update(account, actor="test", mode=Account.Mode.DIRECT),
            ("direct_mode_account", None),
        ),
        (lambda: services.registry_update(account, actor="test", mode=Account.Mode.BROKERED), ("granted", "other")),
        (lambda: services.registry_delete(role, actor="test"), ("no_matching_mapping", None)),
    ]
    seen = []
    try:
        for server in servers:
            server.wait_ready()
        for change, _ in steps:
            change()
            seen.append(outcomes())
    finally:
        for server in servers:
            server.stop()
    assert seen == [[outcome, outcome] for _, outcome in steps]
