"""Host candidates on chosen addresses and inside a chosen UDP port range.

Real aiortc peers on loopback. Ports are read twice: in the candidates the SDP
announces, and in the sockets the ICE transports really hold.
"""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator

import pytest
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

from streamer import InvalidNetworkSetting, PortRangeExhausted, Sfu, SfuConfig
from streamer.aiortc_internals import local_ice_addresses, restrict_ice
from streamer.port_range import PortAllocator, PortRange
from tests.streamer.conftest import Peers
from tests.streamer.peers import LOOPBACK, eventually, peer_connection
from tests.support.ports import free_udp_range
from tests.support.tones import PatternVideoTrack, ToneTrack
from tests.support.turn_server import TurnServer

_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ (\w+)", re.MULTILINE)


def announced(sdp: str) -> list[tuple[str, int, str]]:
    """(address, port, type) of every UDP candidate in an SDP text."""
    return [(host, int(port), kind) for host, port, kind in _CANDIDATE.findall(sdp)]


def bindable(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
        return True


def in_range(ports: tuple[int, int], port: int) -> bool:
    return ports[0] <= port <= ports[1]


@pytest.fixture
async def ranged() -> AsyncIterator[tuple[Sfu, tuple[int, int]]]:
    """An SFU on loopback whose host candidates must lie in three free ports."""
    ports = free_udp_range(3)
    sfu = Sfu(SfuConfig(port_range=ports, host_addresses=LOOPBACK))
    yield sfu, ports
    await sfu.close()


@pytest.fixture
async def ranged_peers(ranged: tuple[Sfu, tuple[int, int]]) -> AsyncIterator[Peers]:
    created = Peers(ranged[0])
    yield created
    await created.close()


async def test_every_socket_of_publishers_and_subscribers_is_in_the_range(
    ranged: tuple[Sfu, tuple[int, int]], ranged_peers: Peers
) -> None:
    sfu, ports = ranged
    sfu.declare_output("floor", "audio")
    sfu.declare_output("program-video", "video")
    speaker = await ranged_peers.publisher("speaker", [ToneTrack(1000), PatternVideoTrack()])
    sfu.point("floor", "speaker/audio")
    sfu.point("program-video", "speaker/video")
    listener = await ranged_peers.subscriber(
        "listener", {"video": "program-video", "voice": "floor"}, decode=False
    )
    await eventually(lambda: listener.rtp["voice"].count() > 10, what="forwarded audio")

    answer = speaker.pc.remoteDescription.sdp
    offer = listener.pc.remoteDescription.sdp
    for sdp in (answer, offer):
        candidates = announced(sdp)
        assert candidates
        assert all(host == "127.0.0.1" and in_range(ports, port) for host, port, _ in candidates)
    node_sockets = local_ice_addresses(sfu._publishers["speaker"].pc) + local_ice_addresses(
        sfu._subscribers["listener"].pc
    )
    assert node_sockets
    assert all(host == "127.0.0.1" and in_range(ports, port) for host, port in node_sockets)


async def test_the_newcomer_past_the_range_is_refused_and_nobody_else_notices(
    ranged: tuple[Sfu, tuple[int, int]], ranged_peers: Peers
) -> None:
    sfu, ports = ranged
    sfu.declare_output("floor", "audio")
    await ranged_peers.publisher("speaker", [ToneTrack(1000)])
    sfu.point("floor", "speaker/audio")
    first = await ranged_peers.subscriber("first", {"voice": "floor"}, decode=False)
    second = await ranged_peers.subscriber("second", {"voice": "floor"}, decode=False)

    with pytest.raises(PortRangeExhausted) as refused:
        await sfu.subscribe("third", {"voice": "floor"})
    message = str(refused.value)
    assert f"{ports[0]}-{ports[1]}" in message and "widen the range" in message
    with pytest.raises(PortRangeExhausted):
        await ranged_peers.publisher("late speaker", [ToneTrack(440)])

    stats = sfu.stats()
    assert sorted(stats["subscribers"]) == ["first", "second"]
    assert list(stats["publishers"]) == ["speaker"]
    assert stats["outputs"]["floor"]["slots"] == 2  # the refused slot left its output
    before = first.rtp["voice"].count(), second.rtp["voice"].count()
    await eventually(
        lambda: (
            first.rtp["voice"].count() > before[0] + 10
            and second.rtp["voice"].count() > before[1] + 10
        ),
        what="the others to keep receiving",
    )


async def test_a_port_is_used_again_once_its_peer_closed(
    ranged: tuple[Sfu, tuple[int, int]], ranged_peers: Peers
) -> None:
    sfu = ranged[0]
    sfu.declare_output("floor", "audio")
    await ranged_peers.publisher("speaker", [ToneTrack(1000)])
    sfu.point("floor", "speaker/audio")
    await ranged_peers.subscriber("first", {"voice": "floor"}, decode=False)
    second = await ranged_peers.subscriber("second", {"voice": "floor"}, decode=False)
    with pytest.raises(PortRangeExhausted):
        await sfu.subscribe("third", {"voice": "floor"})
    # Connected, so that closing it tells its browser to stop sending: aioice takes
    # datagrams from any address, and a peer still handshaking towards a port that
    # was given to a newcomer would disturb the newcomer's DTLS handshake.
    await eventually(lambda: second.pc.connectionState == "connected", what="connection")
    freed = local_ice_addresses(sfu._subscribers["second"].pc)[0][1]

    await sfu.close_subscriber("second")
    third = await ranged_peers.subscriber("third", {"voice": "floor"}, decode=False)
    await eventually(lambda: third.rtp["voice"].count() > 10, what="media on the reused port")
    assert [port for _, port in local_ice_addresses(sfu._subscribers["third"].pc)] == [freed]


async def test_a_half_gathered_newcomer_closes_what_it_had_bound() -> None:
    # Two addresses: the newcomer binds a port on the first, finds the range full
    # on the second, and must give the first one back.
    ports = free_udp_range(2, ("127.0.0.1", "127.0.0.2"))
    sfu = Sfu(SfuConfig(port_range=ports, host_addresses=("127.0.0.1", "127.0.0.2")))
    held = []
    try:
        for port in range(ports[0], ports[1] + 1):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.2", port))
            held.append(sock)
        sfu.declare_output("floor", "audio")
        with pytest.raises(PortRangeExhausted, match=re.escape("on 127.0.0.2")):
            await sfu.subscribe("listener", {"voice": "floor"})
        assert all(bindable("127.0.0.1", port) for port in range(ports[0], ports[1] + 1))
        assert sfu.stats()["subscribers"] == {}
    finally:
        for sock in held:
            sock.close()
        await sfu.close()


async def test_without_a_range_host_candidates_are_on_the_given_address_only(
    sfu: Sfu, peers: Peers
) -> None:
    # The `sfu` fixture gathers on 127.0.0.1 only, which aioice alone never does.
    sfu.declare_output("floor", "audio")
    offer = await sfu.subscribe("listener", {"voice": "floor"})
    assert {host for host, _, _ in announced(offer)} == {"127.0.0.1"}
    assert {host for host, _ in local_ice_addresses(sfu._subscribers["listener"].pc)} == {
        "127.0.0.1"
    }


async def test_a_test_peer_restricted_like_the_node_uses_the_range_too() -> None:
    ports = free_udp_range(2)
    pc = peer_connection()
    restrict_ice(pc, LOOPBACK, PortAllocator(PortRange(*ports)))
    try:
        pc.addTransceiver("audio", direction="recvonly")
        pc.createDataChannel("added after restrict_ice")
        await pc.setLocalDescription(await pc.createOffer())
        addresses = local_ice_addresses(pc)
        assert addresses and all(in_range(ports, port) for _, port in addresses)
    finally:
        await pc.close()


# -- the allocator alone -----------------------------------------------------------


def test_the_allocator_takes_ports_in_turn_and_skips_taken_ones() -> None:
    first, last = free_udp_range(3)
    allocator = PortAllocator(PortRange(first, last))
    outsider = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    outsider.bind(("127.0.0.1", first + 1))  # another program holds the middle port
    sockets = []
    try:
        sockets.append(allocator.bind("127.0.0.1"))
        sockets.append(allocator.bind("127.0.0.1"))
        assert [s.getsockname()[1] for s in sockets] == [first, last]
        with pytest.raises(PortRangeExhausted):
            allocator.bind("127.0.0.1")
        sockets.pop(0).close()
        again = allocator.bind("127.0.0.1")
        sockets.append(again)
        assert again.getsockname()[1] == first
    finally:
        outsider.close()
        for sock in sockets:
            sock.close()


def test_an_address_that_is_not_ours_is_not_called_exhaustion() -> None:
    allocator = PortAllocator(PortRange(*free_udp_range(2)))
    with pytest.raises(OSError) as raised:
        allocator.bind("192.0.2.1")  # TEST-NET-1: never assigned to this machine
    assert not isinstance(raised.value, PortRangeExhausted)


@pytest.mark.parametrize(
    ("port_range", "message"),
    [
        ((5000, 4000), "is empty: its first port must not be above its last"),
        ((0, 100), "two ports from 1 to 65535"),
        ((60000, 70000), "two ports from 1 to 65535"),
        (("40000", "40010"), "two ports from 1 to 65535"),
        ((40000,), "a (first, last) pair of ports"),
    ],
)
def test_a_port_range_that_cannot_be_used_is_refused(port_range: object, message: str) -> None:
    with pytest.raises(InvalidNetworkSetting, match=re.escape(message)):
        Sfu(SfuConfig(port_range=port_range))  # type: ignore[arg-type]


@pytest.mark.parametrize("address", ["eth0", "localhost", "", "127.0.0.256"])
def test_a_host_address_that_is_not_an_ip_address_is_refused(address: str) -> None:
    with pytest.raises(InvalidNetworkSetting, match="is not one"):
        Sfu(SfuConfig(host_addresses=(address,)))


def test_one_address_given_as_text_instead_of_a_tuple_is_refused() -> None:
    with pytest.raises(InvalidNetworkSetting, match="a tuple of IP addresses"):
        Sfu(SfuConfig(host_addresses="127.0.0.1"))  # type: ignore[arg-type]


async def test_stun_and_turn_candidates_are_still_gathered(turn_server: TurnServer) -> None:
    # A real coturn on loopback answers STUN and allocates relays; restrict_ice must
    # leave both to aioice while it binds the host sockets itself.
    ports = free_udp_range(2)
    username, credential = turn_server.login()
    pc = RTCPeerConnection(
        RTCConfiguration(
            iceServers=[
                RTCIceServer(urls=f"stun:127.0.0.1:{turn_server.port}"),
                RTCIceServer(urls=turn_server.urls[0], username=username, credential=credential),
            ]
        )
    )
    restrict_ice(pc, LOOPBACK, PortAllocator(PortRange(*ports)))
    try:
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        candidates = announced(pc.localDescription.sdp)
    finally:
        await pc.close()
    by_type = {kind: (host, port) for host, port, kind in candidates}
    assert set(by_type) == {"host", "srflx", "relay"}, candidates
    assert in_range(ports, by_type["host"][1])
    # Seen from a server on loopback, the reflexive address is the host socket itself.
    assert by_type["srflx"] == by_type["host"]
    assert by_type["relay"][0] == "127.0.0.1"
    assert turn_server.relay_ports[0] <= by_type["relay"][1] <= turn_server.relay_ports[1]
