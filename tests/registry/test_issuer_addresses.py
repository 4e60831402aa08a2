"""Issuer URLs and jwks_url may not name loopback, link-local (cloud metadata) or other non-public
addresses unless their network is allowed (found in review); the private networks are allowed by
default so a self-managed GitLab on a private network works."""

from __future__ import annotations

import io
import ipaddress

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from mappings.addresses import address_refusal, host_refusal
from mappings.models import Issuer
from tests.registry.conftest import as_yaml

pytestmark = pytest.mark.django_db

# The shipped default (tests and `make run` add loopback).
DEFAULT_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))
production = override_settings(ROLEGATE_ISSUER_ALLOWED_NETWORKS=DEFAULT_NETWORKS, ROLEGATE_ALLOW_HTTP=True)

REFUSED = {
    "http://127.0.0.1:8080": "loopback",
    "http://localhost": "loopback",
    "http://gitlab.localhost": "loopback",
    "http://[::1]": "loopback",
    "http://[::ffff:127.0.0.1]": "loopback",
    "http://127.1": "loopback",
    "http://2130706433": "loopback",
    "http://0x7f.0.0.1": "loopback",
    "http://169.254.169.254": "link-local",
    "http://[fe80::1]": "link-local",
    "http://0.0.0.0": "unspecified",
    "http://[::]": "unspecified",
    "http://224.0.0.1": "multicast",
    "http://100.64.0.1": "private or reserved",
    "http://192.0.2.10": "private or reserved",
}
ALLOWED = [
    "https://gitlab.com",
    "https://gitlab.example.com",
    "http://10.1.2.3",
    "http://172.20.0.5:8080",
    "http://192.168.1.10",
    "http://[fd12:3456::1]",
    "https://8.8.8.8",
]


def errors(**fields) -> dict[str, list[str]]:
    issuer = Issuer(
        **{"name": "gitlab-own", "url": "https://gitlab.com", "audiences": ["https://rg.example"], **fields}
    )
    try:
        issuer.full_clean()
    except ValidationError as exc:
        return exc.message_dict
    return {}


@production
@pytest.mark.parametrize("field", ["url", "jwks_url"])
@pytest.mark.parametrize(("value", "kind"), REFUSED.items())
def test_non_public_addresses_are_refused(field, value, kind):
    url = value if field == "url" else value + "/oauth/discovery/keys"
    [message] = errors(**{field: url})[field]
    assert kind in message and "ROLEGATE_ISSUER_ALLOWED_NETWORKS" in message


@production
@pytest.mark.parametrize("field", ["url", "jwks_url"])
@pytest.mark.parametrize("value", ALLOWED)
def test_public_names_and_private_networks_are_accepted(field, value):
    assert field not in errors(**{field: value})


@override_settings(
    ROLEGATE_ISSUER_ALLOWED_NETWORKS=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("169.254.0.0/16")),
    ROLEGATE_ALLOW_HTTP=True,
)
def test_listed_networks_are_allowed_and_unlisted_private_ones_refused():
    assert errors(url="http://127.0.0.1:8080", jwks_url="http://169.254.10.1/keys") == {}
    assert "private or reserved" in errors(url="http://10.1.2.3")["url"][0]


@production
def test_apply_refuses_them_with_the_path_in_the_file(tmp_path):
    path = tmp_path / "rolegate.yaml"
    path.write_text(
        as_yaml(
            {
                "issuers": [
                    {"name": "meta", "url": "http://169.254.169.254", "audiences": ["https://rg.example"]},
                    {
                        "name": "own",
                        "url": "https://gitlab.internal.example",
                        "audiences": ["https://rg.example"],
                        "jwks_url": "http://[::1]:6379/keys",
                    },
                ]
            }
        )
    )
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("apply", str(path), stdout=io.StringIO(), stderr=err)
    lines = err.getvalue().splitlines()
    assert any(line.startswith("issuers[0].url:") and "link-local" in line for line in lines), lines
    assert any(line.startswith("issuers[1].jwks_url:") and "loopback" in line for line in lines), lines
    assert not Issuer.objects.exists()


@production
def test_the_admin_refuses_them(admin_client):
    response = admin_client.post(
        "/admin/mappings/issuer/add/",
        {"name": "meta", "url": "http://169.254.169.254", "audiences": '["https://rg.example"]', "jwks_url": ""},
    )
    assert response.status_code == 200
    assert "link-local" in response.content.decode()
    assert not Issuer.objects.exists()


@production
@given(st.ip_addresses())
def test_every_address_is_either_public_private_or_refused(address):
    refusal = address_refusal(address)
    plain = address.ipv4_mapped if getattr(address, "ipv4_mapped", None) else address
    if plain.is_loopback or plain.is_link_local or plain.is_unspecified:
        assert refusal is not None
    elif any(plain in network for network in DEFAULT_NETWORKS):
        assert refusal is None
    host = f"[{address}]" if address.version == 6 else str(address)
    assert host_refusal(host.strip("[]")) == refusal
