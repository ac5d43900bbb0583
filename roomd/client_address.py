"""The key under which per-address limits count a client: its IPv4 address, or its IPv6 /64.

An IPv6 subscriber is usually given a whole /64 and may send from any address in it;
counted one address at a time it would have as many allowances as it likes. So the
connection, creation, room and login limits count an IPv6 client by its /64 (an
IPv4-mapped IPv6 address by its IPv4 address), and name that network when they refuse.
"""

from __future__ import annotations

import ipaddress

IPV6_PREFIX = 64


def limit_key(address: str) -> str:
    """`address` as the limits count it; anything that is not an IP address stays as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv4Address):
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
