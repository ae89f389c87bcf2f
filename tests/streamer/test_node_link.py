"""Node links: an output pulled from the node holding its publisher, heard on another node.

Two (or three) SFUs in this process, each with its own link endpoint on
127.0.0.1, real aiortc publishers on the origin and real aiortc subscribers on
the edge; the path between the nodes goes through the impairing relay when a
test cuts it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket

from streamer import LinkError, LinkLimitReached, LinkLimits, Sfu, SfuConfig, UnknownOutput
from streamer.node_link import EDGE_TIMEOUT_S, LinkKey, NodeLinks
from testbed.impaired_network import RELAY_HOST, Impairment, UdpRelay
from testbed.ports import free_udp_range
from tests.streamer.conftest import Peers
from tests.streamer.peers import LOOPBACK, eventually
from tests.support.aiortc_probes import observe_sent_rtcp, send_rtcp
from tests.support.tones import SAMPLE_RATE, PatternVideoTrack, ToneRecorder, ToneTrack

SECRET = b"cluster secret for the tests, 32b"


def node(**config: object) -> Sfu:
    return Sfu(SfuConfig(ice_servers=[], host_addresses=LOOPBACK, link_secret=SECRET, **config))


@pytest.fixture
async def nodes() -> AsyncIterator[list[Sfu]]:
    """Open SFUs the test appends; closed (with their peers) at the end."""
    created: list[Sfu] = []
    yield created
    for sfu in created:
        await sfu.close()


async def open_node(nodes: list[Sfu], **config: object) -> Sfu:
    sfu = node(**config)
    nodes.append(sfu)
    await sfu.open_links("127.0.0.1")
    return sfu


@pytest.fixture
async def peer_sets() -> AsyncIterator[dict[Sfu, Peers]]:
    sets: dict[Sfu, Peers] = {}
    yield sets
    for peers in sets.values():
        await peers.close()


def peers_of(sets: dict[Sfu, Peers], sfu: Sfu) -> Peers:
    return sets.setdefault(sfu, Peers(sfu))


async def hears(recorder: ToneRecorder, frequency: float, within: float = 10.0) -> None:
    """Wait until the last 0.3 s of fresh audio is dominated by `frequency`."""
    deadline = time.monotonic() + within
    while True:
        samples = await recorder.wait_for_samples(0.3, within=max(0.5, deadline - time.monotonic()))
        heard = recorder.dominant_frequency()
        if abs(heard - frequency) < 15 and np.abs(samples).max() > 1000:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"heard {heard:.0f} Hz, not {frequency:.0f} Hz")


async def silence(recorder: ToneRecorder, seconds: float = 0.5) -> bool:
    """True if, over `seconds`, the subscriber got no audio or only near-silence."""
    recorder.clear()
    await asyncio.sleep(seconds)
    samples = recorder.samples()
    return len(samples) == 0 or float(np.abs(samples[-SAMPLE_RATE // 10 :]).max()) < 300


@pytest.fixture
async def relays() -> AsyncIterator[list[UdpRelay]]:
    started: list[UdpRelay] = []
    yield started
    for relay in started:
        await relay.close()


async def relay_to(relays: list[UdpRelay], sfu: Sfu) -> tuple[UdpRelay, tuple[str, int]]:
    """A relay in front of a node's link endpoint, and the address to pull through it."""
    assert sfu.link_address is not None
    port = sfu.link_address[1]
    relay = await UdpRelay([port]).start()
    relays.append(relay)
    return relay, (RELAY_HOST, port)


async def test_edge_hears_the_origin_and_follows_its_switches(
    nodes: list[Sfu], peer_sets: dict[Sfu, Peers], relays: list[UdpRelay]
) -> None:
    origin, edge = await open_node(nodes), await open_node(nodes)
    # A plain relay between the nodes shows what crosses the wire.
    wire, origin_address = await relay_to(relays, origin)
    await peers_of(peer_sets, origin).publisher("speaker", [ToneTrack(440)])
    await peers_of(peer_sets, origin).publisher("interpreter", [ToneTrack(880)])
    for sfu in (origin, edge):
        sfu.declare_output("floor", "audio")
        sfu.declare_output("channel-fr", "audio")
    origin.point("floor", "speaker/audio")
    origin.point("channel-fr", "interpreter/audio")
    local = await peers_of(peer_sets, origin).subscriber("local", {"voice": "channel-fr"})

    edge.pull("floor", origin_address)
    assert edge.sources()["floor@link"] == "audio"
    assert edge.outputs()["floor"] == "floor@link"
    listener = await peers_of(peer_sets, edge).subscriber("listener", {"voice": "floor"})
    recorder = listener.audio["voice"]
    await hears(recorder, 440)

    # Switches at the origin reach the edge on the same connection.
    origin.point("floor", "interpreter/audio")
    await hears(recorder, 880)
    origin.point("floor", None)  # a cough
    assert await silence(recorder), "the cough let something through on the edge"
    origin.point("floor", "speaker/audio")
    await hears(recorder, 440)
    await local.audio["voice"].wait_for_samples(0.2)

    ssrcs = {packet[4] for packet in listener.rtp["voice"].packets}
    assert len(ssrcs) == 1, "the edge's subscriber saw another stream"
    assert edge.stats()["subscribers"]["listener"]["connection"] == "connected"

    # Only the pulled output crosses the link, although channel-fr is live on the origin.
    stats = origin.stats()
    assert stats["outputs"]["floor"]["links"] == 1
    assert stats["outputs"]["channel-fr"]["links"] == 0
    (link,) = stats["links"]["edges"].values()
    assert link["outputs"] == ["floor"]
    received = edge.stats()["links"]["origins"]
    (pulled,) = received.values()
    assert pulled["up"] and pulled["packets_in"] > 50
    floor_ssrc = pulled["outputs"]["floor"]["ssrc"]
    assert edge.stats()["links"]["refused"]["unknown_ssrc"] == 0
    assert floor_ssrc is not None
    # On the wire, nothing is in the clear: the media crossed, yet no datagram shows the
    # output's RTP header (SRTP would: its SSRC where RTP has it). A sealed datagram
    # starts with a random sender id, which a reader may take for an RTP first byte; the
    # bytes where the SSRC would be are the high half of its number, zero here.
    assert wire.downstream.counters.received > 50
    for path in (wire.downstream, wire.upstream):
        assert set(path.counters.rtp_received) <= {0}, path.counters.rtp_received

    # Stopping the pull stops the traffic: the origin forgets the edge.
    assert edge.stop_pulling("floor")
    assert "floor@link" not in edge.sources()
    assert edge.outputs()["floor"] is None
    await eventually(lambda: not origin.stats()["links"]["edges"], what="the origin to stop")
    assert origin.stats()["outputs"]["floor"]["links"] == 0


async def test_pull_and_point_last_call_wins(nodes: list[Sfu], peer_sets: dict[Sfu, Peers]) -> None:
    origin, edge = await open_node(nodes), await open_node(nodes)
    await peers_of(peer_sets, origin).publisher("speaker", [ToneTrack(440)])
    await peers_of(peer_sets, edge).publisher("local-speaker", [ToneTrack(660)])
    for sfu in (origin, edge):
        sfu.declare_output("floor", "audio")
    origin.point("floor", "speaker/audio")
    edge.declare_output("copy", "audio")
    edge.point("floor", "local-speaker/audio")
    edge.pull("floor", origin.link_address)  # replaces the local pointing
    edge.point("copy", "floor@link")  # another output may follow a remote source
    listener = await peers_of(peer_sets, edge).subscriber(
        "listener", {"voice": "floor", "copy": "copy"}
    )
    await hears(listener.audio["voice"], 440)
    await hears(listener.audio["copy"], 440)

    edge.point("floor", "floor@link")  # its own remote source: still pulled
    assert edge.pulls() == {"floor": origin.link_address}
    edge.point("floor", "local-speaker/audio")  # stops the pull
    assert edge.pulls() == {}
    await hears(listener.audio["voice"], 660)
    # The follower remembers the remote source and hears it again when it is pulled again.
    assert edge.outputs()["copy"] == "floor@link"
    edge.pull("floor", origin.link_address)
    await hears(listener.audio["copy"], 440)


async def test_links_chain_into_a_tree(nodes: list[Sfu], peer_sets: dict[Sfu, Peers]) -> None:
    origin, middle, leaf = await open_node(nodes), await open_node(nodes), await open_node(nodes)
    await peers_of(peer_sets, origin).publisher("speaker", [ToneTrack(440)])
    await peers_of(peer_sets, origin).publisher("interpreter", [ToneTrack(880)])
    for sfu in (origin, middle, leaf):
        sfu.declare_output("floor", "audio")
    origin.point("floor", "speaker/audio")
    middle.pull("floor", origin.link_address)
    leaf.pull("floor", middle.link_address)  # the middle's pulled output, pulled again
    listener = await peers_of(peer_sets, leaf).subscriber("listener", {"voice": "floor"})
    await hears(listener.audio["voice"], 440)
    origin.point("floor", "interpreter/audio")
    await hears(listener.audio["voice"], 880)
    assert len({packet[4] for packet in listener.rtp["voice"].packets}) == 1


async def test_video_keyframes_cross_the_link(
    nodes: list[Sfu], peer_sets: dict[Sfu, Peers]
) -> None:
    origin, edge = await open_node(nodes), await open_node(nodes)
    origin_peers = peers_of(peer_sets, origin)
    first = await origin_peers.publisher("first", [PatternVideoTrack()])
    await origin_peers.publisher("second", [PatternVideoTrack()])
    plis = 0

    def count_pli(packet: object) -> None:
        nonlocal plis
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_PLI:
            plis += 1

    observe_sent_rtcp(first.pc.getTransceivers()[0].sender, count_pli)
    for sfu in (origin, edge):
        sfu.declare_output("program-video", "video")
    origin.point("program-video", "first/video")
    await eventually(
        lambda: origin.stats()["sources"]["first/video"]["packets"] > 30, what="video flowing"
    )
    await asyncio.sleep(1.0)  # past the publisher's first (and only natural) keyframe

    edge.pull("program-video", origin.link_address)
    viewer = await peers_of(peer_sets, edge).subscriber("viewer", {"video": "program-video"})
    frames = viewer.video["video"]
    await eventually(lambda: frames.frames >= 10, what="decoded frames on the edge")

    # A picture loss on the edge reaches the publisher on the origin.
    await asyncio.sleep(1.2)  # past the throttles of the join's requests
    before = plis
    transceiver = viewer.pc.getTransceivers()[0]
    media_ssrc = viewer.rtp["video"].packets[-1][4]
    await send_rtcp(
        transceiver.receiver.transport,
        RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1234, media_ssrc=media_ssrc),
    )
    await eventually(lambda: plis > before, what="the PLI at the origin's publisher")
    (link,) = origin.stats()["links"]["edges"].values()
    assert link["keyframe_requests"] >= 1

    # A switch at the origin: the edge's viewer decodes the new speaker, same connection.
    origin.point("program-video", "second/video")
    await eventually(
        lambda: origin.stats()["sources"]["second/video"]["keyframe_requests"] >= 1,
        what="a keyframe request to the new speaker",
    )
    switched_at = frames.frames
    await eventually(lambda: frames.frames >= switched_at + 10, what="frames after the switch")
    assert len({p[4] for p in viewer.rtp["video"].packets}) == 1


async def test_video_lost_on_the_link_is_asked_for_again(
    nodes: list[Sfu], peer_sets: dict[Sfu, Peers], relays: list[UdpRelay]
) -> None:
    origin, edge = await open_node(nodes), await open_node(nodes)
    relay, origin_address = await relay_to(relays, origin)
    relay.set_impairment(Impairment(), Impairment(loss=0.05))  # origin -> edge loses 5%
    await peers_of(peer_sets, origin).publisher("speaker", [PatternVideoTrack()])
    for sfu in (origin, edge):
        sfu.declare_output("program-video", "video")
    origin.point("program-video", "speaker/video")
    edge.pull("program-video", origin_address)
    viewer = await peers_of(peer_sets, edge).subscriber("viewer", {"video": "program-video"})
    frames = viewer.video["video"]
    await eventually(lambda: relay.downstream.counters.lost >= 5, what="losses on the link")
    await eventually(lambda: frames.frames >= 30, within=20, what="frames despite the losses")
    link = f"{origin_address[0]}:{origin_address[1]}"
    assert edge.stats()["links"]["origins"][link]["nacked"] >= 1
    (served,) = origin.stats()["links"]["edges"].values()
    assert served["nacked"] >= 1
    assert served["retransmitted"] >= 1  # from the origin slot's history


def missing_numbers(packets: list[tuple[float, int, int, int, int]]) -> tuple[int, int]:
    """(numbers missing, numbers spanned) between the first and the newest packet a slot
    received (one stream: the same SSRC throughout)."""
    seqs = [packet[1] for packet in packets]
    first = seqs[0]
    offsets = {(seq - first) & 0xFFFF for seq in seqs}
    span = max(offset for offset in offsets if offset < 0x8000) + 1
    return span - len({offset for offset in offsets if offset < span}), span


async def test_audio_lost_on_the_link_is_sent_again_in_time(
    nodes: list[Sfu], peer_sets: dict[Sfu, Peers], relays: list[UdpRelay]
) -> None:
    origin, edge = await open_node(nodes), await open_node(nodes)
    relay, origin_address = await relay_to(relays, origin)
    await peers_of(peer_sets, origin).publisher("interpreter", [ToneTrack(440)])
    for sfu in (origin, edge):
        sfu.declare_output("channel-fr", "audio")
    origin.point("channel-fr", "interpreter/audio")
    edge.pull("channel-fr", origin_address)
    listener = await peers_of(peer_sets, edge).subscriber("listener", {"voice": "channel-fr"})
    await hears(listener.audio["voice"], 440)

    # From now on the origin -> edge path loses one datagram in five.
    relay.set_impairment(Impairment(), Impairment(loss=0.2))
    received = listener.rtp["voice"].packets
    start = len(received)
    await eventually(lambda: len(received) >= start + 125, what="125 packets more")
    missing, span = missing_numbers(received[start:])
    assert relay.downstream.counters.lost >= 15, relay.downstream.counters
    # Without repair a fifth would be missing; with it, about what loses the repair too.
    assert missing <= 0.08 * span, f"{missing} of {span} packets missing on the edge"
    link = f"{origin_address[0]}:{origin_address[1]}"
    pulled = edge.stats()["links"]["origins"][link]
    assert pulled["nacked"] > 0 and pulled["repaired"] > 0, pulled
    (served,) = origin.stats()["links"]["edges"].values()
    assert served["retransmitted"] > 0, served


async def test_a_cut_path_is_rebuilt(
    nodes: list[Sfu], peer_sets: dict[Sfu, Peers], relays: list[UdpRelay]
) -> None:
    origin, edge = await open_node(nodes), await open_node(nodes)
    relay, origin_address = await relay_to(relays, origin)
    await peers_of(peer_sets, origin).publisher("speaker", [ToneTrack(440)])
    for sfu in (origin, edge):
        sfu.declare_output("floor", "audio")
    origin.point("floor", "speaker/audio")
    edge.pull("floor", origin_address)
    listener = await peers_of(peer_sets, edge).subscriber("listener", {"voice": "floor"})
    recorder = listener.audio["voice"]
    await hears(recorder, 440)
    link = f"{origin_address[0]}:{origin_address[1]}"

    for outage in (1.5, EDGE_TIMEOUT_S + 1.0):  # the origin still sends; it gave up
        relay.cut()
        await asyncio.sleep(outage)
        assert not edge.stats()["links"]["origins"][link]["up"]
        if outage > EDGE_TIMEOUT_S:
            assert not origin.stats()["links"]["edges"], "the origin still sends"
        relay.restore()
        restored = time.monotonic()
        await hears(recorder, 440, within=10)
        # Generous for a loaded machine; bench/node_link.py measures the real figure.
        assert time.monotonic() - restored < 5.0
    stats = edge.stats()["links"]["origins"][link]
    assert stats["up"] and stats["rebuilds"] == 2


async def test_restarted_origin_and_edge_are_linked_again(
    nodes: list[Sfu], peer_sets: dict[Sfu, Peers]
) -> None:
    ports = free_udp_range(40)
    origin = await open_node(nodes, port_range=ports)
    edge = await open_node(nodes)
    address = origin.link_address
    await peers_of(peer_sets, origin).publisher("speaker", [ToneTrack(440)])
    origin.declare_output("floor", "audio")
    origin.point("floor", "speaker/audio")
    edge.declare_output("floor", "audio")
    edge.pull("floor", address)
    listener = await peers_of(peer_sets, edge).subscriber("listener", {"voice": "floor"})
    recorder = listener.audio["voice"]
    await hears(recorder, 440)

    # The origin restarts on the same address, its speaker reconnects with another voice.
    await peer_sets.pop(origin).close()
    await origin.close()
    nodes.remove(origin)
    restarted = await open_node(nodes, port_range=ports)
    assert restarted.link_address == address
    await peers_of(peer_sets, restarted).publisher("speaker", [ToneTrack(660)])
    restarted.declare_output("floor", "audio")
    restarted.point("floor", "speaker/audio")
    await hears(recorder, 660)
    assert edge.stats()["links"]["origins"][f"{address[0]}:{address[1]}"]["rebuilds"] >= 1

    # The edge restarts on its address: the origin serves the new one, not the old one.
    edge_address = edge.link_address
    await peer_sets.pop(edge).close()
    await edge.close()
    nodes.remove(edge)
    edge_ports = (edge_address[1], edge_address[1])
    new_edge = await open_node(nodes, port_range=edge_ports)
    assert new_edge.link_address == edge_address
    new_edge.declare_output("floor", "audio")
    new_edge.pull("floor", address)
    await eventually(
        lambda: new_edge.stats()["sources"]["floor@link"]["packets"] > 10,
        what="the restarted edge to be fed",
    )
    (served,) = restarted.stats()["links"]["edges"].values()
    assert served["outputs"] == ["floor"]


async def test_forged_and_malformed_datagrams_are_counted_and_ignored(
    nodes: list[Sfu], peer_sets: dict[Sfu, Peers]
) -> None:
    origin, edge = await open_node(nodes), await open_node(nodes)
    await peers_of(peer_sets, origin).publisher("speaker", [ToneTrack(440)])
    for sfu in (origin, edge):
        sfu.declare_output("floor", "audio")
    origin.point("floor", "speaker/audio")
    edge.pull("floor", origin.link_address)
    listener = await peers_of(peer_sets, edge).subscriber("listener", {"voice": "floor"})
    await hears(listener.audio["voice"], 440)

    key = LinkKey(SECRET)
    stranger = LinkKey(b"another cluster's secret, 32 b..")
    now = int(time.time() * 1000)

    def control(message: dict, sealer: LinkKey = key) -> bytes:
        return sealer.seal(json.dumps(message).encode())

    pull = {"type": "pull", "boot": "attacker", "n": 1, "time": now, "outputs": {"floor": "audio"}}
    rtp = bytes([0x80, 111, 0, 1]) + bytes(8) + b"payload"
    junk = [
        b"",
        b"x",
        bytes(range(256)) * 4,
        rtp,  # no tag
        stranger.seal(rtp),  # another cluster's key
        control(pull, stranger),
        key.seal(b"{not json"),
        key.seal(b"\x00\x01binary"),
        key.seal(b"\x80"),  # RTP too short
        control({"type": "pull"}),  # no boot, counter, time
        control({**pull, "n": 2, "outputs": ["floor"]}),
        control({**pull, "n": 3, "time": now - 3_600_000}),  # an hour old
        control({**pull, "n": 4, "type": "launch"}),
        control({**pull, "n": 5, "boot": "x" * 100}),
        control({"type": "keyframe", "boot": "a", "n": 1, "time": now, "output": "floor"}),
        control({"type": "nack", "boot": "b", "n": 1, "time": now, "output": 3, "lost": "x"}),
        control({"type": "carry", "boot": "c", "n": 1, "time": now, "outputs": []}),
        key.seal(rtp),  # authentic media from nobody the node pulls from
    ]
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    attacker.bind(("127.0.0.1", 0))
    try:
        for target in (origin.link_address, edge.link_address):
            for datagram in junk:
                attacker.sendto(datagram, target)
        # An authentic pull, then the same datagram again (a replay), then unknown outputs.
        attacker.sendto(control({**pull, "n": 10}), origin.link_address)
        attacker.sendto(control({**pull, "n": 10}), origin.link_address)
        attacker.sendto(
            control({**pull, "n": 11, "outputs": {"nothing": "audio", "floor": "video"}}),
            origin.link_address,
        )
        await asyncio.sleep(0.5)
    finally:
        attacker.close()

    refused = origin.stats()["links"]["refused"]
    assert refused["forged"] == 6
    assert refused["malformed"] == 6
    assert refused["unknown_peer"] == 5
    assert refused["stale"] == 1
    assert refused["replayed"] == 1
    assert refused["refused_outputs"] == 2
    assert edge.stats()["links"]["refused"]["forged"] == 6
    assert edge.stats()["links"]["refused"]["unknown_peer"] >= 1
    # The real link kept flowing.
    await hears(listener.audio["voice"], 440)
    (pulled,) = edge.stats()["links"]["origins"].values()
    assert pulled["up"]


async def test_misuse_gets_clear_errors(nodes: list[Sfu]) -> None:
    plain = Sfu(SfuConfig(ice_servers=[], host_addresses=LOOPBACK))
    nodes.append(plain)
    with pytest.raises(LinkError, match="shared secret"):
        await plain.open_links("127.0.0.1")
    short = Sfu(SfuConfig(ice_servers=[], link_secret=b"short"))
    nodes.append(short)
    with pytest.raises(LinkError, match="at least 16 bytes"):
        await short.open_links("127.0.0.1")
    unopened = node()
    nodes.append(unopened)
    with pytest.raises(LinkError, match="bound on an IP address"):
        await unopened.open_links("localhost")
    with pytest.raises(LinkError, match=r"cannot open the link endpoint on 192\.0\.2\.1"):
        await unopened.open_links("192.0.2.1")  # an address this machine does not have
    unopened.declare_output("floor", "audio")
    with pytest.raises(LinkError, match="open this node's link endpoint"):
        unopened.pull("floor", ("127.0.0.1", 4000))
    with pytest.raises(LinkError, match="max_pulled is a whole number"):
        LinkLimits(max_pulled=0)
    origin = await open_node(nodes)
    edge = await open_node(nodes, link_limits=LinkLimits(max_pulled=1))
    with pytest.raises(LinkError, match="already open"):
        await edge.open_links("127.0.0.1")
    edge.declare_output("floor", "audio")
    edge.declare_output("channel-fr", "audio")
    with pytest.raises(UnknownOutput):
        edge.pull("nothing", origin.link_address)
    for bad in ("127.0.0.1:4000", ("localhost", 4000), ("127.0.0.1", 0), ("127.0.0.1", "80")):
        with pytest.raises(LinkError):
            edge.pull("floor", bad)  # type: ignore[arg-type]
    with pytest.raises(LinkError, match="own link endpoint"):
        edge.pull("floor", edge.link_address)
    edge.pull("floor", origin.link_address)
    edge.pull("floor", origin.link_address)  # idempotent
    with pytest.raises(LinkLimitReached):
        edge.pull("channel-fr", origin.link_address)
    assert not edge.stop_pulling("channel-fr")
    assert plain.pulls() == {}


async def test_an_unknown_output_and_too_many_edges_are_refused(nodes: list[Sfu]) -> None:
    origin = await open_node(nodes, link_limits=LinkLimits(max_edges=1))
    first, second = await open_node(nodes), await open_node(nodes)
    origin.declare_output("floor", "audio")
    for edge in (first, second):
        edge.declare_output("floor", "audio")
        edge.declare_output("channel-xx", "audio")
    first.pull("floor", origin.link_address)
    first.pull("channel-xx", origin.link_address)
    await eventually(
        lambda: (
            first.stats()["links"]["origins"]
            and next(iter(first.stats()["links"]["origins"].values()))["outputs"]["channel-xx"][
                "problem"
            ]
            == "no such output on the origin"
        ),
        what="the refusal",
    )
    second.pull("floor", origin.link_address)
    await eventually(
        lambda: origin.stats()["links"]["refused"]["refused_edges"] >= 1, what="the second edge"
    )
    await eventually(
        lambda: (
            next(iter(second.stats()["links"]["origins"].values()))["outputs"]["floor"]["problem"]
            == "this node serves as many edges as it may"
        ),
        what="the second edge to be told",
    )
    assert list(origin.stats()["links"]["edges"]) == [f"127.0.0.1:{first.link_address[1]}"]


def test_control_messages_reordered_are_taken_once_each() -> None:
    links = NodeLinks(SECRET, lambda name: None)
    key = LinkKey(SECRET)
    now = int(time.time() * 1000)
    for n in (5, 3, 4, 3, 5, 100, 36, 37, 99):
        message = {"type": "pull", "boot": "edge", "n": n, "time": now, "outputs": {}}
        links.datagram_received(key.seal(json.dumps(message).encode()), ("127.0.0.1", 9))
    # 3 and 5 again are replays; 36 is too far behind 100 to be told from one.
    assert links.counters.replayed == 3
    assert links.counters.malformed == 0


def test_a_datagram_is_authentic_only_whole_and_under_the_cluster_key() -> None:
    key = LinkKey(SECRET)
    sealed = key.seal(b"{}")
    assert key.open(sealed) == b"{}"
    assert LinkKey(SECRET).open(sealed) == b"{}", "another node of the cluster opens it"
    assert key.open(sealed[:-1]) is None
    for flipped in range(len(sealed)):  # sender id, number, body or tag
        assert (
            key.open(sealed[:flipped] + bytes([sealed[flipped] ^ 1]) + sealed[flipped + 1 :])
            is None
        )
    assert LinkKey(b"another cluster's secret, 32 b..").open(sealed) is None


def test_what_crosses_a_link_is_encrypted_and_no_two_datagrams_share_a_nonce() -> None:
    key = LinkKey(SECRET)
    packet = bytes([0x80, 111, 0, 1]) + bytes(8) + b"the interpreter's words" * 4
    first, second = key.seal(packet), key.seal(packet)
    assert first != second  # a new number each time: the same body never looks the same
    for sealed in (first, second):
        assert b"interpreter" not in sealed and packet[:12] not in sealed
        assert len(sealed) == len(packet) + 32  # sender id 8, number 8, tag 16
        assert key.open(sealed) == packet
    # Two endpoints (two nodes, or one node restarted) seal under different keys.
    assert LinkKey(SECRET).seal(packet)[8:16] == first[8:16]  # both number from 1 ...
    assert LinkKey(SECRET).seal(packet)[:8] != first[:8]  # ... under their own sender id
    with pytest.raises(LinkError):
        LinkKey("a text secret, long enough")  # type: ignore[arg-type]


async def test_a_node_behind_a_nat_announces_its_public_address(nodes: list[Sfu]) -> None:
    kept = node()
    nodes.append(kept)
    # A NAT that keeps ports: the public host, the port bound.
    address = await kept.open_links("127.0.0.1", public_address=("203.0.113.7", None))
    bound = kept.link_bound_address
    assert bound is not None and bound[0] == "127.0.0.1"
    assert address == kept.link_address == ("203.0.113.7", bound[1])
    links = kept.stats()["links"]
    assert links["address"] == f"203.0.113.7:{bound[1]}"
    assert links["bound"] == f"127.0.0.1:{bound[1]}"

    # A published port: the port forwarded to is bound, another port is announced.
    mapped = node()
    nodes.append(mapped)
    (port, _) = free_udp_range(1)
    address = await mapped.open_links("127.0.0.1", port=port, public_address=("127.0.0.1", 40123))
    assert address == mapped.link_address == ("127.0.0.1", 40123)
    bound = mapped.link_bound_address
    assert bound == ("127.0.0.1", port)
    mapped.declare_output("floor", "audio")
    for own in (address, bound):
        with pytest.raises(LinkError, match="own link endpoint"):
            mapped.pull("floor", own)

    refused = node()
    nodes.append(refused)
    with pytest.raises(LinkError, match=r"every interface \(0\.0\.0\.0\) needs"):
        await refused.open_links("0.0.0.0")
    with pytest.raises(LinkError, match=rf"cannot open the link endpoint on 127\.0\.0\.1:{port}"):
        await refused.open_links("127.0.0.1", port=port)  # the other node holds it
    for bad_port in (0, 65536, True, "4000"):
        with pytest.raises(LinkError, match="port is from 1 to 65535"):
            await refused.open_links("127.0.0.1", port=bad_port)  # type: ignore[arg-type]
    for bad, says in (
        (("localhost", None), "host is an IP address"),
        (("0.0.0.0", 4000), "names no machine"),
        (("::", None), "names no machine"),
        (("127.0.0.1", 0), "from 1 to 65535"),
        (("127.0.0.1", 65536), "from 1 to 65535"),
        (("127.0.0.1", "4000"), "pair"),
        (("127.0.0.1", True), "pair"),
        ("127.0.0.1:4000", "pair"),
    ):
        with pytest.raises(LinkError, match=says):
            await refused.open_links("127.0.0.1", public_address=bad)  # type: ignore[arg-type]
    assert refused.link_address is None
