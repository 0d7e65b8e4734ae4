"""The address a request really came from, trusting X-Forwarded-For only from our own proxies."""

from __future__ import annotations

import ipaddress

from starlette.requests import Request


def _networks(entries: tuple[str, ...]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(entry, strict=False) for entry in entries]


class ClientAddressResolver:
    """Walks X-Forwarded-For from the right, skipping trusted proxies, as nginx's real_ip does."""

    def __init__(self, trusted_proxies: tuple[str, ...]) -> None:
        self._trusted = _networks(trusted_proxies)

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)

    def resolve(self, request: Request) -> str:
        peer = request.client.host if request.client else ""
        if not self._trusted or not self._is_trusted(peer):
            return peer
        forwarded = request.headers.get("x-forwarded-for", "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                try:
                    return str(ipaddress.ip_address(hop))
                except ValueError:
                    return peer  # a forged, malformed hop: fall back to what we saw
        return peer
