"""Who is asking: the client address that rate limits count and access logs show.

Without trusted proxies it is the TCP peer. Behind a reverse proxy every visitor
would share the proxy's address, so the peers listed in ``DRAGOMAN_TRUSTED_PROXIES``
are believed when they say, in ``X-Forwarded-For``, whom they forwarded. Only
them: the header is ignored from anyone else, or a client could name a new
address on every request and never meet a rate limit.

Reading ``X-Forwarded-For`` from the right: each proxy appends the peer it saw,
so the rightmost entries are written by our proxies and the client is the first
address, from the right, that is not one of them. Entries left of it were
written by the client and are not believed. An entry that is not an address
stops the walk: nothing left of it can be trusted, so the last address walked
(at worst the proxy itself) is the client, which can only make a limit tighter.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web

from signaling.appkeys import SETTINGS_KEY

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

UNKNOWN = "unknown"


def _address(text: str) -> IPAddress | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443", as some proxies write
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "192.0.2.1:51234"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # A dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d; networks are written in IPv4.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, proxies: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in proxies)


def forwarded_client(
    peer: str | None, forwarded_for: Sequence[str], proxies: Sequence[IPNetwork]
) -> str:
    """The client address of a connection from `peer` carrying these ``X-Forwarded-For``
    header values (in the order received), given the trusted `proxies`."""
    if peer is None:
        return UNKNOWN
    address = _address(peer)
    if address is None or not _trusted(address, proxies):
        return peer
    entries = [entry for value in forwarded_for for entry in value.split(",")]
    for entry in reversed(entries):
        hop = _address(entry)
        if hop is None:
            break
        address = hop
        if not _trusted(hop, proxies):
            break
    return str(address)


def client_address(request: web.BaseRequest) -> str:
    """The client address of `request` (see the module's docstring)."""
    try:
        proxies = request.app[SETTINGS_KEY].trusted_proxies  # type: ignore[attr-defined]
    except (AttributeError, KeyError, AssertionError):
        # A request aiohttp refuses before routing it (a malformed request line) has no
        # application (aiohttp asserts there is one), hence no trusted proxies: its peer
        # is all there is.
        proxies = []
    if not proxies:
        return request.remote or UNKNOWN
    return forwarded_client(request.remote, request.headers.getall("X-Forwarded-For", []), proxies)
