"""Which hosts an issuer URL or a ``jwks_url`` may name (docs/operations.md "Security controls").

Rolegate fetches JWKS from these URLs, so an admin (or a YAML file) naming
``http://169.254.169.254/...`` or ``http://127.0.0.1:6379/`` would make Rolegate call its own
metadata service or loopback services. Allowed: public addresses, and the networks in
``ROLEGATE_ISSUER_ALLOWED_NETWORKS`` (by default the private ones, RFC 1918 and IPv6 ULA, so a
self-managed GitLab on a private network works). Loopback, link-local (the cloud metadata
address), unspecified, multicast and other reserved addresses are refused unless listed there.

Pure: no DNS at validation time (``apply`` must not depend on the resolver); a name is checked
by its literal form only (``localhost`` and ``*.localhost`` are loopback by definition).
:func:`address_refusal` is what a fetch checks on the addresses a name resolves to.
"""

from __future__ import annotations

import ipaddress
import socket

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _normalised(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return address


def address_refusal(address: IPAddress) -> str | None:
    """Why Rolegate must not fetch from ``address``, or ``None`` when it may."""
    address = _normalised(address)
    if any(address in network for network in settings.ROLEGATE_ISSUER_ALLOWED_NETWORKS):
        return None
    if address.is_loopback:
        kind = "a loopback address"
    elif address.is_link_local:
        kind = "a link-local address (cloud metadata services live there)"
    elif address.is_unspecified:
        kind = "the unspecified address"
    elif address.is_multicast:
        kind = "a multicast address"
    elif address.is_global:
        return None
    else:
        kind = "a private or reserved address"
    return (
        f"{address} is {kind}; add its network to ROLEGATE_ISSUER_ALLOWED_NETWORKS to allow it "
        "(a self-managed GitLab on a private network)."
    )


def _literal_address(host: str) -> IPAddress | None:
    """The address a host names literally, in any form the resolver accepts (``127.1``,
    ``2130706433``, ``0x7f.0.0.1``), or ``None`` for a name."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def host_refusal(host: str) -> str | None:
    """Why a URL may not name ``host`` (checked without DNS), or ``None``."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return address_refusal(ipaddress.ip_address("127.0.0.1"))
    address = _literal_address(name)
    return address_refusal(address) if address is not None else None
