"""Regression tests for the aiortc private names the streamer relies on.

If an aiortc upgrade moves any of them, these fail first, naming what moved.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aioice.ice
import aiortc
import ifaddr
import pytest
from aioice.ice import Connection
from aiortc import RTCBundlePolicy, RTCPeerConnection, clock
from aiortc import sdp as aiortc_sdp
from aiortc.mediastreams import MediaStreamTrack

from streamer import Sfu, aiortc_internals
from streamer import sfu as sfu_module
from streamer.aiortc_internals import (
    AIORTC_VERSION,
    AiortcIncompatible,
    IdleTrack,
    InboundTap,
    NodeCertificate,
    SenderLink,
    cache_host_addresses,
    check,
    check_restrict_ice,
    ntp_time,
    peer_certificates,
    restrict_ice,
    start_skipped_sender,
)
from streamer.negotiation import check_subscriber_answer, rtc_configuration
from streamer.sender_reports import SenderReports
from tests.streamer.conftest import Peers
from tests.streamer.peers import ReceivedRtp, eventually, peer_connection
from tests.support.aiortc_probes import observe_received_rtp
from tests.support.server import dragoman, dragoman_env, free_port
from tests.support.tones import PatternVideoTrack, ToneTrack


async def test_aiortc_is_the_pinned_release_and_has_every_private_name() -> None:
    assert aiortc.__version__ == AIORTC_VERSION
    await check()


async def test_missing_private_name_is_reported_by_name() -> None:
    class NotAReceiver:
        pass

    async def ignore(*args: object) -> None:
        return None

    with pytest.raises(AiortcIncompatible, match="_RTCRtpReceiver__codecs"):
        InboundTap(NotAReceiver(), ignore)  # type: ignore[arg-type]
    with pytest.raises(AiortcIncompatible, match="'_ssrc'"):
        SenderLink(NotAReceiver(), lambda negotiated: None, ignore, SenderReports())  # type: ignore[arg-type]
    with pytest.raises(AiortcIncompatible, match="_RTCPeerConnection__iceTransports"):
        restrict_ice(NotAReceiver(), ["127.0.0.1"])  # type: ignore[arg-type]


async def test_restrict_ice_decides_where_host_candidates_are_gathered() -> None:
    # The part of check() about restrict_ice, on its own: sockets on loopback only,
    # including those of a transport created after the call (a data channel's).
    await check_restrict_ice()


async def test_restrict_ice_fails_loudly_if_aioice_changes_the_method_it_replaces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def renamed(self: object, component: int, hosts: list[str]) -> list:
        return []

    monkeypatch.setattr(Connection, "get_component_candidates", renamed)
    with pytest.raises(AiortcIncompatible, match="get_component_candidates takes"):
        await check_restrict_ice()


async def test_idle_track_never_yields() -> None:
    track = IdleTrack("audio")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(track.recv(), 0.1)


async def test_idle_sender_sends_nothing_until_an_output_has_a_source(
    sfu: Sfu, peers: Peers
) -> None:
    sfu.declare_output("floor", "audio")
    listener = await peers.subscriber("listener", {"voice": "floor"}, decode=False)
    await eventually(lambda: listener.pc.connectionState == "connected", what="connection")
    await asyncio.sleep(0.5)
    # aiortc's own sender loop is parked on the idle track: no RTP at all.
    assert listener.rtp["voice"].count() == 0

    await peers.publisher("speaker", [ToneTrack(1000)])
    sfu.point("floor", "speaker/audio")
    await eventually(lambda: listener.rtp["voice"].count() > 10, what="forwarded packets")
    # Everything the subscriber got came from the forwarder, none from an encoder.
    assert sfu.stats()["subscribers"]["listener"]["packets"] >= listener.rtp["voice"].count()


async def test_every_connection_of_a_node_shares_its_dtls_certificate(
    sfu: Sfu, peers: Peers
) -> None:
    """Two subscribers and a publisher: one fingerprint, each connected and receiving
    (a DTLS handshake each, over SSL contexts the certificate built once)."""
    await peers.publisher("speaker", [ToneTrack(1000)])
    sfu.declare_output("floor", "audio")
    sfu.point("floor", "speaker/audio")
    listeners = [
        await peers.subscriber(name, {"voice": "floor"}, decode=False) for name in ("a", "b")
    ]
    for listener in listeners:
        await eventually(lambda p=listener: p.rtp["voice"].count() > 10, what="media")
    a, b = (
        {
            line
            for line in listener.pc.remoteDescription.sdp.splitlines()
            if line.startswith("a=fingerprint:")
        }
        for listener in listeners
    )
    assert a and a == b, (a, b)
    certificate = sfu._certificate
    assert all(
        peer_certificates(peer.pc) == [certificate]
        for peer in [*sfu._subscribers.values(), *sfu._publishers.values()]
    )
    assert len(certificate._contexts) == 1


async def test_a_node_certificate_near_its_end_is_replaced_for_new_connections(
    sfu: Sfu, peers: Peers
) -> None:
    old = sfu._certificate
    assert not old.expires_within(29 * 24 * 3600)  # aiortc's: 30 days
    sfu._certificate = old = NodeCertificate(old._key, old._cert)
    old.expires_within = lambda seconds: True  # type: ignore[method-assign]
    sfu.declare_output("floor", "audio")
    await peers.subscriber("late", {"voice": "floor"}, decode=False)
    assert sfu._certificate is not old
    assert peer_certificates(sfu._subscribers["late"].pc) == [sfu._certificate]


async def test_a_subscriber_answer_is_parsed_once(
    sfu: Sfu, peers: Peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The streamer parses the answer to check it; aiortc takes that very description
    instead of parsing the text again. Plain text still parses."""
    await peers.publisher("speaker", [ToneTrack(1000)])
    sfu.declare_output("floor", "audio")
    sfu.point("floor", "speaker/audio")
    checked = []

    def check_and_keep(sdp: str, kinds: list[str]) -> aiortc_sdp.SessionDescription:
        checked.append(check_subscriber_answer(sdp, kinds))
        return checked[-1]

    monkeypatch.setattr(sfu_module, "check_subscriber_answer", check_and_keep)
    listener = await peers.subscriber("listener", {"voice": "floor"}, decode=False)
    await eventually(lambda: listener.rtp["voice"].count() > 10, what="media")
    pc = sfu._subscribers["listener"].pc
    assert pc._RTCPeerConnection__currentRemoteDescription is checked[0]
    text = listener.pc.localDescription.sdp
    plain = aiortc_sdp.SessionDescription.parse(text)
    assert plain is not checked[0] and [m.kind for m in plain.media] == ["audio"]


def test_aioice_enumerates_interfaces_once_for_many_gatherings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    enumerations = []
    enumerate_adapters = ifaddr.get_adapters

    def counted() -> list:
        enumerations.append(1)
        return enumerate_adapters()

    monkeypatch.setattr(ifaddr, "get_adapters", counted)
    monkeypatch.setattr(aiortc_internals, "_host_addresses_cache", None)
    cache_host_addresses()
    first = aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
    for _ in range(20):
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == first
    assert len(enumerations) == 1
    aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True)
    assert len(enumerations) == 2, "other address families are asked for again"


def test_ntp_time_matches_aiortc_clock() -> None:
    import time

    ours = ntp_time(time.time())
    theirs = clock.current_ntp_time()
    assert abs(ours - theirs) < (1 << 32) // 20  # within 50 ms


def test_no_ice_servers_means_none() -> None:
    # RTCConfiguration() alone would make aiortc contact a public STUN server.
    assert rtc_configuration([]).iceServers == []
    configured = rtc_configuration(["stun:stun.example.org:3478"])
    assert [server.urls for server in configured.iceServers] == ["stun:stun.example.org:3478"]


async def connect_pair(
    offerer: RTCPeerConnection, answerer: RTCPeerConnection, tracks: list[MediaStreamTrack]
) -> list[ReceivedRtp]:
    """The offerer sends `tracks`, one sendonly section each; what each section delivers."""
    for track in tracks:
        offerer.addTransceiver(track, direction="sendonly")
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    received = [ReceivedRtp() for _ in tracks]
    for transceiver, rtp in zip(answerer.getTransceivers(), received, strict=True):
        observe_received_rtp(transceiver.receiver, rtp.observe, decode=False)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)
    return received


async def test_balanced_bundle_leaves_a_sender_unstarted_which_can_be_started() -> None:
    # Why a subscriber's peer connection offers with max-bundle, and what
    # start_skipped_sender repairs: under aiortc's default policy the second
    # audio section after a video one stays on a transport bundling discarded.
    offerer = peer_connection(RTCBundlePolicy.BALANCED)
    answerer = peer_connection(RTCBundlePolicy.MAX_BUNDLE)
    try:
        video, first, second = await connect_pair(
            offerer, answerer, [PatternVideoTrack(), ToneTrack(1000), ToneTrack(440)]
        )
        await eventually(lambda: video.count() > 5 and first.count() > 5, what="two sections")
        await asyncio.sleep(0.5)
        assert second.count() == 0, "aiortc started it: SUBSCRIBER_BUNDLE_POLICY may not matter"
        skipped = offerer.getTransceivers()[2]
        assert skipped.sender.transport.state != "connected"

        assert await start_skipped_sender(offerer, skipped) is None
        await eventually(lambda: second.count() > 5, what="the started section")
        assert {p[4] for p in second.packets} == {skipped.sender._ssrc}
    finally:
        await offerer.close()
        await answerer.close()


async def test_max_bundle_starts_every_sender() -> None:
    offerer = peer_connection(RTCBundlePolicy.MAX_BUNDLE)
    answerer = peer_connection(RTCBundlePolicy.MAX_BUNDLE)
    try:
        received = await connect_pair(
            offerer, answerer, [PatternVideoTrack(), ToneTrack(1000), ToneTrack(440)]
        )
        await eventually(lambda: all(r.count() > 5 for r in received), what="every section")
    finally:
        await offerer.close()
        await answerer.close()


async def test_a_failing_start_stays_with_its_sender() -> None:
    # An exception out of one link must not end aiortc's task that starts the next senders.
    offerer = peer_connection(RTCBundlePolicy.MAX_BUNDLE)
    answerer = peer_connection(RTCBundlePolicy.MAX_BUNDLE)
    started: list[str] = []

    def broken(negotiated: object) -> None:
        raise ValueError("cannot use this")

    async def ignore_rtcp(packet: object) -> bool:
        return False

    try:
        for kind in ("audio", "audio"):
            offerer.addTransceiver(IdleTrack(kind), direction="sendonly")
        first, second = offerer.getTransceivers()
        reports = SenderReports()
        failing = SenderLink(first.sender, broken, ignore_rtcp, reports)
        working = SenderLink(second.sender, lambda n: started.append(n.mid), ignore_rtcp, reports)
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        await offerer.setRemoteDescription(answerer.localDescription)
        await eventually(lambda: started == [second.mid], what="the second sender started")
        assert failing.started and working.started
        assert failing.failure is not None and "cannot use this" in failing.failure
        assert working.failure is None
    finally:
        await offerer.close()
        await answerer.close()
        reports.close()


async def test_a_node_with_another_aiortc_release_is_refused_as_it_starts(tmp_path: Path) -> None:
    # The process imports a `sitecustomize` first: there, aiortc says it is another release.
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(
        'import aiortc\naiortc.__version__ = "1.15.0"\n', encoding="utf-8"
    )
    env = dragoman_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "site"), env["PYTHONPATH"]])
    result = await dragoman(
        "serve", "--port", str(free_port()), "--data-dir", tmp_path / "data", env=env
    )
    assert result.status == 1, result
    assert "aiortc 1.15.0 is installed; the streamer is pinned to 1.16.0" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Open http" not in result.stdout
