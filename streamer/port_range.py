"""UDP sockets for WebRTC, bound on chosen addresses and inside a chosen port range.

A firewall in front of a node opens one range of UDP ports for media, so every
socket a peer connection gathers a host candidate on must lie in that range.
The operating system is the record of which ports are taken: the allocator
tries to bind one port after the other, starting after the last one it gave
out, so a port freed when a peer closes comes back into use without
bookkeeping here, and a port another program holds is simply skipped. Taking
turns also keeps a port just freed out of use for as long as the range allows:
aioice accepts datagrams from any address, and a remote peer that has not yet
noticed its connection closed may still be sending to its old port.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass, field

from .errors import InvalidNetworkSetting, PortRangeExhausted

# A port in the range that cannot be bound for one of these reasons is "taken";
# anything else (an address this machine does not have) is not the range's fault.
_TAKEN = frozenset({errno.EADDRINUSE, errno.EACCES})


@dataclass(frozen=True)
class PortRange:
    """Ports `first` to `last`, both included."""

    first: int
    last: int

    def __post_init__(self) -> None:
        for port in (self.first, self.last):
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise InvalidNetworkSetting(
                    f"a port range is two ports from 1 to 65535, not {self.first!r}-{self.last!r}"
                )
        if self.first > self.last:
            raise InvalidNetworkSetting(
                f"the port range {self.first}-{self.last} is empty: its first port must not be "
                "above its last"
            )

    def __len__(self) -> int:
        return self.last - self.first + 1

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


@dataclass
class PortAllocator:
    """Binds UDP sockets on free ports of one range, taking turns through it."""

    ports: PortRange
    _next: int = field(init=False)

    def __post_init__(self) -> None:
        self._next = self.ports.first

    def bind(self, address: str) -> socket.socket:
        """A non-blocking UDP socket bound to `address` on a free port of the range.

        Raises `PortRangeExhausted` when every port is taken, `OSError` when the
        address itself cannot be bound.
        """
        ports = self.ports
        for _ in range(len(ports)):
            port = self._next
            self._next = port + 1 if port < ports.last else ports.first
            try:
                return _bound_socket(address, port)
            except OSError as exc:
                if exc.errno not in _TAKEN:
                    raise
        raise PortRangeExhausted(ports.first, ports.last, address)


def check_address(address: object) -> str:
    """`address` if it is an IP address a socket can be bound to, else InvalidNetworkSetting."""
    try:
        ipaddress.ip_address(address)  # type: ignore[arg-type]
    except ValueError:
        raise InvalidNetworkSetting(
            f"host candidates are gathered on IP addresses; {address!r:.60} is not one"
        ) from None
    return address  # type: ignore[return-value]


def bind_udp(address: str, ports: PortAllocator | None, port: int = 0) -> socket.socket:
    """A non-blocking UDP socket on `address`: on `port` if one is given, else in the range
    if there is one, else any port."""
    if port:
        return _bound_socket(address, port)
    if ports is not None:
        return ports.bind(address)
    return _bound_socket(address, 0)


def _bound_socket(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((address, port))
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
