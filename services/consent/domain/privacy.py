"""Data minimization for what the consent record keeps about the request (IP address, user agent)."""

from __future__ import annotations

import ipaddress

IPV4_KEPT_BITS = 24
IPV6_KEPT_BITS = 48
USER_AGENT_MAX = 256


def truncate_ip(address: str | None) -> str | None:
    """The network of the address (/24 for IPv4, /48 for IPv6): proof of origin without the host."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    bits = IPV4_KEPT_BITS if ip.version == 4 else IPV6_KEPT_BITS
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False).network_address)


def clip_user_agent(user_agent: str | None) -> str | None:
    return user_agent[:USER_AGENT_MAX] if user_agent else None
