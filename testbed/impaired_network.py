"""A bad network in user space: a UDP relay that loses, delays, reorders and duplicates.

This machine has no `tc netem` and no packet filter, and Chromium's fake-network
field trials do not take effect in Debian's build, so tests impair the path
themselves. The relay stands in front of a node whose WebRTC sockets lie in a
known port range: for every port P of that range it listens on
`relay_host:P` and forwards to `node_host:P`, so a node that announces
`relay_host` in its candidates (its public-address setting) is reached only
through the relay, ports mapped one to one. Each client address gets its own
socket towards the node, so the node sees the relay as the client's
(peer-reflexive) address and answers through it.

A peer's own host candidates would let the node reach it directly, around the
relay: `strip_candidates` removes them from the peer's SDP, as if the peer sat
behind a NAT whose private addresses nobody can reach.

Both directions have their own `Impairment`; `cut()`/`restore()` make an outage (both
ways, or one way only). Everything is driven by one seeded random generator, so a run can
be repeated.

To cut one side of an event and not the other, give each side its own relay: relays on
other loopback addresses (127.0.0.3, ...) in front of the same node ports, and
`page_behind_nat(reach_node_through=...)` for the pages of that side, which then find
the node at their relay's address instead of the one the node announces. Whatever peer
connection such a page opens, now or after an outage, crosses its own relay only.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

Address = tuple[str, int]

RELAY_HOST = "127.0.0.2"


@dataclass
class Impairment:
    """What happens to datagrams going one way."""

    loss: float = 0.0  # probability that a datagram is dropped
    delay_ms: float = 0.0  # constant one-way delay
    jitter_ms: float = 0.0  # uniform extra delay in [0, jitter_ms): reorders packets
    duplicate: float = 0.0  # probability that a datagram is sent twice
    reorder: float = 0.0  # probability that a datagram is held back by `reorder_ms`
    reorder_ms: float = 15.0

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability, not {value}")
        for name in ("delay_ms", "jitter_ms", "reorder_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative")


@dataclass
class PathCounters:
    """What one direction did to its datagrams."""

    received: int = 0
    forwarded: int = 0
    lost: int = 0
    duplicated: int = 0
    cut: int = 0  # dropped during an outage
    # By the SSRC of the RTP datagrams (SRTP leaves the header in clear): a reader that knows
    # a receiver's SSRC (getStats) tells what was lost on its stream from the rest.
    rtp_received: Counter[int] = field(default_factory=Counter)
    rtp_lost: Counter[int] = field(default_factory=Counter)


def rtp_ssrc(data: bytes) -> int | None:
    """The SSRC of an RTP datagram; None for RTCP, STUN, DTLS (RFC 7983 demultiplexing)."""
    if len(data) < 12 or not 128 <= data[0] <= 191 or 192 <= data[1] <= 223:
        return None
    return int.from_bytes(data[8:12], "big")


class _Path:
    """One direction: applies an `Impairment` and sends through a transport."""

    def __init__(self, impairment: Impairment, rng: random.Random, relay: UdpRelay) -> None:
        self.impairment = impairment
        self.counters = PathCounters()
        self.is_cut = False
        self._rng = rng
        self._relay = relay

    def carry(self, transport: asyncio.DatagramTransport, data: bytes, to: Address) -> None:
        counters = self.counters
        counters.received += 1
        ssrc = rtp_ssrc(data)
        if ssrc is not None:
            counters.rtp_received[ssrc] += 1
        if self.is_cut:
            counters.cut += 1
            return
        spec = self.impairment
        rng = self._rng
        if spec.loss and rng.random() < spec.loss:
            counters.lost += 1
            if ssrc is not None:
                counters.rtp_lost[ssrc] += 1
            return
        copies = 2 if spec.duplicate and rng.random() < spec.duplicate else 1
        counters.duplicated += copies - 1
        for _ in range(copies):
            delay = spec.delay_ms
            if spec.jitter_ms:
                delay += rng.random() * spec.jitter_ms
            if spec.reorder and rng.random() < spec.reorder:
                delay += spec.reorder_ms
            if delay <= 0:
                self._send(transport, data, to)
            else:
                self._relay.later(delay / 1000, self._send, transport, data, to)

    def _send(self, transport: asyncio.DatagramTransport, data: bytes, to: Address) -> None:
        if transport.is_closing():
            return
        self.counters.forwarded += 1
        transport.sendto(data, to)


class _ClientFacing(asyncio.DatagramProtocol):
    """`relay_host:P`, where clients send what is meant for the node's port P."""

    def __init__(self, relay: UdpRelay, node_addr: Address) -> None:
        self.relay = relay
        self.node_addr = node_addr
        self.transport: asyncio.DatagramTransport | None = None
        self.to_node: dict[Address, _NodeFacing] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if self.relay.is_gone(addr):
            self.relay.upstream.counters.cut += 1
            return
        node_facing = self.to_node.get(addr)
        if node_facing is None:
            node_facing = _NodeFacing(self, addr)
            self.to_node[addr] = node_facing
            self.relay.open_node_facing(node_facing)
        node_facing.send(data)


class _NodeFacing(asyncio.DatagramProtocol):
    """One client's socket towards the node: what the node sees as that client."""

    def __init__(self, client_side: _ClientFacing, client_addr: Address) -> None:
        self.client_side = client_side
        self.client_addr = client_addr
        self.transport: asyncio.DatagramTransport | None = None
        self._waiting: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        for data in self._waiting:
            self.send(data)
        self._waiting.clear()

    def send(self, data: bytes) -> None:
        if self.transport is None:
            self._waiting.append(data)
            return
        relay = self.client_side.relay
        relay.upstream.carry(self.transport, data, self.client_side.node_addr)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        client_transport = self.client_side.transport
        if client_transport is not None:
            self.client_side.relay.downstream.carry(client_transport, data, self.client_addr)


@dataclass
class UdpRelay:
    """Relays `relay_host:P` <-> `node_host:P` for every P in `ports`, impaired."""

    ports: Iterable[int]
    node_host: str = "127.0.0.1"
    relay_host: str = RELAY_HOST
    upstream_impairment: Impairment = field(default_factory=Impairment)  # client -> node
    downstream_impairment: Impairment = field(default_factory=Impairment)  # node -> client
    seed: int = 1

    def __post_init__(self) -> None:
        self.ports = tuple(self.ports)
        self._rng = random.Random(self.seed)
        self.upstream = _Path(self.upstream_impairment, self._rng, self)
        self.downstream = _Path(self.downstream_impairment, self._rng, self)
        self._listeners: list[_ClientFacing] = []
        self._gone: set[Address] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._opening: set[asyncio.Task[None]] = set()
        self._closed = False

    async def start(self) -> UdpRelay:
        loop = asyncio.get_running_loop()
        for port in self.ports:
            protocol = _ClientFacing(self, (self.node_host, port))
            await loop.create_datagram_endpoint(
                lambda protocol=protocol: protocol, local_addr=(self.relay_host, port)
            )
            self._listeners.append(protocol)
        return self

    def set_impairment(self, upstream: Impairment, downstream: Impairment | None = None) -> None:
        """Change both directions' impairment (the same one unless told otherwise)."""
        self.upstream.impairment = upstream
        self.downstream.impairment = downstream or upstream

    def cut(self, *, upstream: bool = True, downstream: bool = True) -> None:
        """Start an outage: nothing gets through (either way, unless told one way only)
        until `restore()`."""
        if not (upstream or downstream):
            raise ValueError("an outage cuts at least one direction")
        self.upstream.is_cut = self.upstream.is_cut or upstream
        self.downstream.is_cut = self.downstream.is_cut or downstream

    def restore(self, *, moved: bool = False) -> None:
        """End the outage, both ways.

        `moved`: the clients come back from elsewhere (another Wi-Fi, a mobile network):
        the addresses they had before are gone for good, so only connections they open
        anew get through (ICE as negotiated cannot recover, it would need a restart).
        """
        if moved:
            for listener in self._listeners:
                self._gone.update(listener.to_node)
                for node_facing in listener.to_node.values():
                    if node_facing.transport is not None:
                        node_facing.transport.close()
                listener.to_node.clear()
        self.upstream.is_cut = self.downstream.is_cut = False

    def is_gone(self, client_addr: Address) -> bool:
        """Whether a client address went away with a move (see `restore`)."""
        return client_addr in self._gone

    @property
    def is_cut(self) -> bool:
        """Whether some direction is cut."""
        return self.upstream.is_cut or self.downstream.is_cut

    def later(self, delay: float, callback: object, *args: object) -> None:
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def run() -> None:
            self._timers.discard(handle)
            callback(*args)  # type: ignore[operator]

        handle = loop.call_later(delay, run)
        self._timers.add(handle)

    def open_node_facing(self, node_facing: _NodeFacing) -> None:
        loop = asyncio.get_running_loop()

        async def open_socket() -> None:
            await loop.create_datagram_endpoint(
                lambda: node_facing, local_addr=(self.relay_host, 0)
            )

        task = asyncio.ensure_future(open_socket())
        self._opening.add(task)
        task.add_done_callback(self._opening.discard)

    async def close(self) -> None:
        self._closed = True
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for task in list(self._opening):
            task.cancel()
        await asyncio.gather(*self._opening, return_exceptions=True)
        for listener in self._listeners:
            for node_facing in listener.to_node.values():
                if node_facing.transport is not None:
                    node_facing.transport.close()
            if listener.transport is not None:
                listener.transport.close()
        self._listeners.clear()


_CANDIDATE_LINE = re.compile(r"^a=(candidate:.*|end-of-candidates)\r?\n", flags=re.MULTILINE)


def strip_candidates(sdp: str) -> str:
    """The SDP without ICE candidates: the peer is found only by its connectivity checks."""
    return _CANDIDATE_LINE.sub("", sdp)


def relayed_node_settings(relay: UdpRelay) -> dict[str, object]:
    """A node's settings that put it behind `relay`: media on loopback, in the relay's
    ports, announcing the relay's address."""
    ports = relay.ports
    return {
        "rtc_ports": f"{min(ports)}-{max(ports)}",
        "rtc_addresses": [relay.node_host],
        "ice_public_address": relay.relay_host,
    }


_PAGE_BEHIND_NAT = r"""
(() => {
  const Native = window.RTCPeerConnection;
  const description = Object.getOwnPropertyDescriptor(Native.prototype, "localDescription");
  window.dragomanPeers = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      window.dragomanPeers.push(this);
    }
  };
  Object.defineProperty(Native.prototype, "localDescription", {
    configurable: true,
    get() {
      const local = description.get.call(this);
      if (!local) return local;
      const sdp = local.sdp.replace(/^a=(candidate:.*|end-of-candidates)\r\n/gm, "");
      return { type: local.type, sdp, toJSON: () => ({ type: local.type, sdp }) };
    },
  });
  const [announced, through] = ANNOUNCED_AND_THROUGH;
  if (through === null) return;
  // The node's address, a whole word of its candidate and connection lines.
  const address = new RegExp(`(?<= )${announced.replaceAll(".", "\\.")}(?=[ \r\n])`, "g");
  const setRemoteDescription = Native.prototype.setRemoteDescription;
  Native.prototype.setRemoteDescription = function (remote, ...rest) {
    if (remote && typeof remote.sdp === "string") {
      remote = { type: remote.type, sdp: remote.sdp.replace(address, through) };
    }
    return setRemoteDescription.call(this, remote, ...rest);
  };
})();
"""


def page_behind_nat(reach_node_through: str | None = None, node_announces: str = RELAY_HOST) -> str:
    """A Chromium init script (`context.add_init_script`): the SDP a page hands the node
    leaves without candidates, so the node reaches the page only through a relay; every
    peer connection the page makes is kept in `window.dragomanPeers` for getStats.

    `reach_node_through`: the address of this page's own relay; the page then replaces the
    address the node announces (`node_announces`) with it in every SDP it receives.
    """
    pair = json.dumps([node_announces, reach_node_through])
    return _PAGE_BEHIND_NAT.replace("ANNOUNCED_AND_THROUGH", pair)


#: `page_behind_nat()` for pages that reach the node through the relay it announces.
PAGE_BEHIND_NAT = page_behind_nat()

#: For Chromium pages on a plain loopback path (a baseline beside `PAGE_BEHIND_NAT`): only
#: keeps every peer connection the page makes in `window.dragomanPeers`, for getStats.
PAGE_PEERS_KEPT = r"""
(() => {
  const Native = window.RTCPeerConnection;
  window.dragomanPeers = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      window.dragomanPeers.push(this);
    }
  };
})();
"""
