"""The SSRF guard: outgoing requests to URLs a workspace chose (webhooks, workflow webhooks) reach
only public addresses.

Two checks, because a name can resolve differently at save and at send (DNS rebinding):
- at save, `check_url` parses the URL and resolves its host: any address that is not globally
  routable (loopback, RFC 1918 private, link-local, carrier-grade NAT, unique-local IPv6,
  cloud metadata such as 169.254.169.254 or fd00:ec2::254, multicast, reserved) is refused;
- at connect time, `GuardedResolver` (an aiohttp resolver, also used by the webhook sender,
  server/webhooks/sender.py) drops every such address before the connection is made, and
  `check_literal` refuses a URL whose host is an address literal (no resolver is asked for those).

`allow_private=True` (settings WEBHOOKS_ALLOW_PRIVATE) turns both off, for receivers on your own
network and for tests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Globally routable on paper, but answered by a cloud's instance metadata service.
_METADATA = {ipaddress.ip_address(a) for a in ("169.254.169.254", "100.100.100.200", "168.63.129.16",
                                               "fd00:ec2::254", "192.0.0.192")}


class UrlRefused(ValueError):
    """The URL is malformed, or it points at an address the guard refuses; `reason` says which."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # "malformed" | "unresolvable" | "private_address"


def is_public(address: str | IPAddress) -> bool:
    """Only globally routable unicast addresses, and never a metadata service's."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast and ip not in _METADATA


def parse(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an absolute http(s) URL; UrlRefused("malformed") otherwise."""
    if len(url) > 2048 or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise UrlRefused("the URL must be at most 2048 characters, without spaces or control characters",
                         "malformed")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlRefused("the URL is not valid", "malformed") from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in ("http", "https") or not host:
        raise UrlRefused("the URL must be absolute http:// or https:// with a host", "malformed")
    return scheme, host, port or (443 if scheme == "https" else 80)


def literal(host: str) -> IPAddress | None:
    """The address when the host is an address literal (brackets allowed), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_literal(url: str, *, allow_private: bool) -> None:
    """Connect time, for an address-literal host (the resolver is not asked for those)."""
    _, host, _ = parse(url)
    ip = literal(host)
    if ip is not None and not allow_private and not is_public(ip):
        raise UrlRefused(f"{ip} is not a public address", "private_address")


async def check_url(url: str, *, allow_private: bool) -> str:
    """Save time: the URL is well formed and every address its host resolves to is public.
    Returns the URL as given."""
    _, host, port = parse(url)
    ip = literal(host)
    if ip is None and not all(c.isalnum() or c in "-._" for c in host):
        raise UrlRefused("the URL's host is not a valid name", "malformed")
    if allow_private:
        return url
    if ip is not None:
        addresses = [ip]
    else:
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM), 5)
        except (OSError, TimeoutError, UnicodeError):
            raise UrlRefused(f"the host {host} does not resolve", "unresolvable") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    refused = [str(a) for a in addresses if not is_public(a)]
    if refused or not addresses:
        raise UrlRefused(f"{host} resolves to an address that is not public ({', '.join(refused[:3])})",
                         "private_address")
    return url


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver with every non-public address dropped (all of them: connection refused)."""

    def __init__(self, *, allow_private: bool, inner: AbstractResolver | None = None) -> None:
        self.allow_private = allow_private
        self.inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        if self.allow_private:
            return found
        public = [r for r in found if is_public(str(r["host"]).split("%", 1)[0])]
        if not public:
            raise OSError(f"{host} resolves only to addresses that are not public (SSRF guard)")
        return public

    async def close(self) -> None:
        await self.inner.close()


def describe(exc: BaseException) -> dict[str, Any]:
    return {"reason": getattr(exc, "reason", "refused"), "message": str(exc)}
