"""A NAT in front of one UDP port: what a cloud machine's 1:1 NAT, or a container's
published port, does to the datagrams of a node's link endpoint.

`PortForward` listens on an outside port Q of 127.0.0.1 and forwards what arrives there
to the inside address (127.0.0.1:P, the node's socket), from a socket of its own per
outside peer, as a NAT sends from the mapping it made for that peer: the node sees the
NAT, never the peer. What the node answers on that socket goes back to the peer from Q
(the source rewritten), so the peer sees its answers come from the address it sent to.
Anything else that reaches a mapping socket is dropped, as a NAT drops what matches no
mapping. The inside address may be given after the start (the node's port is known
once it has bound it); until then what arrives is dropped and counted.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

Address = tuple[str, int]

HOST = "127.0.0.1"


@dataclass
class NatCounters:
    """Datagrams through the NAT, each way."""

    inbound: int = 0  # peer -> node
    outbound: int = 0  # node -> peer
    dropped: int = 0  # no inside address yet, or not from the node


class _Outside(asyncio.DatagramProtocol):
    def __init__(self, nat: PortForward) -> None:
        self.nat = nat
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.nat.from_outside(data, (addr[0], addr[1]))


class _Mapping(asyncio.DatagramProtocol):
    """The NAT's socket for one outside peer: the node's view of that peer."""

    def __init__(self, nat: PortForward, peer: Address) -> None:
        self.nat = nat
        self.peer = peer
        self.transport: asyncio.DatagramTransport | None = None
        self.waiting: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        for data in self.waiting:
            self.nat.to_inside(self, data)
        self.waiting.clear()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.nat.from_inside(self, data, (addr[0], addr[1]))


class PortForward:
    """127.0.0.1:`port` (outside) -> `inside`, answers sent back from the outside port."""

    def __init__(self) -> None:
        self.inside: Address | None = None
        self.counters = NatCounters()
        self._outside = _Outside(self)
        self._mappings: dict[Address, _Mapping] = {}
        self._opening: set[asyncio.Task[None]] = set()

    async def start(self) -> PortForward:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self._outside, local_addr=(HOST, 0))
        return self

    @property
    def port(self) -> int:
        """The outside port: what the node behind announces."""
        assert self._outside.transport is not None
        return int(self._outside.transport.get_extra_info("sockname")[1])

    def forward_to(self, inside: Address) -> None:
        self.inside = inside

    def mapped_addresses(self) -> set[Address]:
        """The addresses the node sees its peers at (one per outside peer)."""
        return {
            (name[0], name[1])
            for m in self._mappings.values()
            if m.transport is not None and (name := m.transport.get_extra_info("sockname"))
        }

    def from_outside(self, data: bytes, peer: Address) -> None:
        if self.inside is None:
            self.counters.dropped += 1
            return
        mapping = self._mappings.get(peer)
        if mapping is None:
            mapping = self._mappings[peer] = _Mapping(self, peer)
            task = asyncio.ensure_future(self._open(mapping))
            self._opening.add(task)
            task.add_done_callback(self._opening.discard)
        if mapping.transport is None:
            mapping.waiting.append(data)
        else:
            self.to_inside(mapping, data)

    async def _open(self, mapping: _Mapping) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: mapping, local_addr=(HOST, 0))

    def to_inside(self, mapping: _Mapping, data: bytes) -> None:
        assert mapping.transport is not None and self.inside is not None
        self.counters.inbound += 1
        mapping.transport.sendto(data, self.inside)

    def from_inside(self, mapping: _Mapping, data: bytes, source: Address) -> None:
        outside = self._outside.transport
        if source != self.inside or outside is None or outside.is_closing():
            self.counters.dropped += 1
            return
        self.counters.outbound += 1
        outside.sendto(data, mapping.peer)

    async def close(self) -> None:
        for task in list(self._opening):
            task.cancel()
        await asyncio.gather(*self._opening, return_exceptions=True)
        for mapping in self._mappings.values():
            if mapping.transport is not None:
                mapping.transport.close()
        if self._outside.transport is not None:
            self._outside.transport.close()
