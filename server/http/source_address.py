"""The address a request comes from, as the throttles count it.

Sanic's `remote_addr` is the client address named by proxy headers, and only when the proxy
settings say which to trust (`SANIC_PROXIES_COUNT`, `SANIC_REAL_IP_HEADER` or
`SANIC_FORWARDED_SECRET`); otherwise it is empty and the socket peer counts, which a client
cannot spoof. An IPv6 client counts by its /64: one host usually holds a whole /64.
"""

from __future__ import annotations

import ipaddress
from typing import Any


def source_address(request: Any) -> str:
    raw = request.remote_addr or request.ip or "unknown"
    try:
        addr = ipaddress.ip_address(raw.strip("[]"))
    except ValueError:
        return str(raw)[:64]
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)
