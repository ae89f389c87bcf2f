"""Media between nodes over a bad path: the node link through the impairing relay.

Node A holds the publishers and the moderator, node B an attendee (one redis-server, one
secret), as in test_media_between_nodes.py; but B reaches A's link endpoint only through
the impairing relay (testbed/impaired_network.py): 5 % of the datagrams lost each way,
40 +- 20 ms of delay that reorders them, some held back more. Both directions: media
from A, and B's pulls, NACKs and keyframe requests. A stands behind the relay as behind
a NAT that keeps ports: it announces the relay's address for its link
(``DRAGOMAN_LINK_PUBLIC_ADDRESS`` without a port), and B finds it in the registry like
any other node.

B's attendee hears the channel at nearly its packet rate (audio lost on the link is asked
for again and sent again while it can still be played), sees the program (video lost on
the link is asked for again by NACK and sent again; after an outage, his keyframe
request crosses the link and a keyframe comes back), and follows a switch made on A.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import pytest
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket, RtpPacket

from signaling.tokens import Role
from signaling.websocket import SFU_KEY, install_live
from streamer.keyframes import is_keyframe_start
from testbed.impaired_network import RELAY_HOST, Impairment, UdpRelay
from tests.signaling.media_peers import (
    FRENCH_SPEAKER,
    RUSSIAN_SPEAKER,
    Subscription,
    ToneTrack,
    publish,
)
from tests.streamer.impaired_publisher import DetailedVideoTrack
from tests.support.aiortc_probes import observe_received_rtp, send_rtcp

SECRET = "cluster-secret-" + "x" * 24
RUSSIAN_HZ, FRENCH_HZ, ANNA_HZ = 1000.0, 700.0, 440.0
#: The path between the nodes: 5 % loss, 40 +- 20 ms, some packets 30 ms later still.
BAD_PATH = Impairment(loss=0.05, delay_ms=20, jitter_ms=40, reorder=0.05, reorder_ms=30)
#: Opus packets a second on a clean path (20 ms each).
NOMINAL_RATE = 50
FOLLOW_S = 10.0
RTPMAP = re.compile(r"a=rtpmap:(\d+) (VP8|H264)/90000")


@pytest.fixture
async def relays() -> AsyncIterator[list[UdpRelay]]:
    started: list[UdpRelay] = []
    yield started
    for relay in started:
        await relay.close()


def packets_of(media: Subscription, slot_name: str) -> list[tuple[float, bool, int]]:
    """The RTP packets a slot receives from now on: (arrival time, whether it starts a
    keyframe, SSRC)."""
    (mid,) = [slot["mid"] for slot in media.slots if slot["name"] == slot_name]
    (transceiver,) = [t for t in media.pc.getTransceivers() if t.mid == mid]
    remote = media.pc.remoteDescription.sdp
    codecs = {int(pt): f"video/{name.lower()}" for pt, name in RTPMAP.findall(remote)}
    arrived: list[tuple[float, bool, int]] = []

    def observe(packet: RtpPacket) -> None:
        mime = codecs.get(packet.payload_type, "audio/opus")
        starts = mime.startswith("video/") and is_keyframe_start(mime, packet.payload)
        arrived.append((time.monotonic(), starts, packet.ssrc))

    observe_received_rtp(transceiver.receiver, observe)
    return arrived


async def frames_grow(media: Subscription, count: int, within: float = FOLLOW_S) -> None:
    counter = media.video["video"]
    start = counter.frames
    deadline = time.monotonic() + within
    while counter.frames < start + count:
        assert time.monotonic() < deadline, f"{counter.frames - start} pictures of {count}"
        await asyncio.sleep(0.05)


async def test_an_attendee_behind_a_lossy_reordering_link_hears_sees_and_follows(
    start_server, redis_url, connect, peers, relays
) -> None:
    a = await start_server(
        extensions=[install_live],
        redis_url=redis_url,
        secret=SECRET,
        link_public_address=RELAY_HOST,
    )
    bound = a.app[SFU_KEY].link_bound_address
    relay = await UdpRelay([bound[1]], node_host=bound[0], seed=5).start()
    relays.append(relay)
    relay.set_impairment(BAD_PATH)
    b = await start_server(extensions=[install_live], redis_url=redis_url, secret=SECRET)
    moderator = await connect(Role.MODERATOR, server=a)
    russian = await connect(
        Role.SPEAKER, subject=RUSSIAN_SPEAKER, speaker=RUSSIAN_SPEAKER, server=a
    )
    french = await connect(Role.SPEAKER, subject=FRENCH_SPEAKER, speaker=FRENCH_SPEAKER, server=a)
    anna = await connect(Role.INTERPRETER, subject="anna", booth="ru-fr", server=a)
    peers.extend([moderator, russian, french, anna])
    # Cameras, not test patterns whose jumps make the encoder send keyframes on its own:
    # after the first, a keyframe comes only when asked for.
    peers.append(await publish(russian, ToneTrack(RUSSIAN_HZ), DetailedVideoTrack(160, 120)))
    peers.append(await publish(french, ToneTrack(FRENCH_HZ), DetailedVideoTrack(160, 120)))
    peers.append(await publish(anna, ToneTrack(ANNA_HZ)))
    await moderator.state_where(
        lambda s: (
            len(s["publishers"]["speakers"]) == 2
            and len(s["publishers"]["interpreters"]["ru-fr"]) == 1
        )
    )
    await anna.send("mic", on=True)
    await moderator.send("start_session", session_id="plenary")
    await moderator.send("put_on_air", speaker_id=RUSSIAN_SPEAKER)

    attendee = await connect(Role.ATTENDEE, subject="reg-b", server=b)
    peers.append(attendee)
    await attendee.send("select_channel", language="fr")
    await attendee.state_where(lambda s: s["you"]["channel"] == "fr")
    media = await Subscription.open(attendee, video=True)
    peers.append(media)
    # The outputs come over the relay: B pulls from the address A announced.
    edge, origin = b.app[SFU_KEY], a.app[SFU_KEY]
    await media.hears("channel", ANNA_HZ, within=FOLLOW_S)
    link = f"{RELAY_HOST}:{relay.ports[0]}"
    assert set(edge.pulls().values()) == {(RELAY_HOST, relay.ports[0])}
    await frames_grow(media, 10)

    # The channel at nearly its packet rate: the link loses 5 % and repairs most of it
    # (a loaded machine delays some past the window).
    arrived = packets_of(media, "channel")
    video = packets_of(media, "video")
    before, started = len(arrived), time.monotonic()
    await asyncio.sleep(4.0)
    rate = (len(arrived) - before) / (time.monotonic() - started)
    assert rate > 0.75 * NOMINAL_RATE, f"{rate:.1f} audio packets a second"
    await media.hears("channel", ANNA_HZ, within=2.0)
    lost_on_link = relay.downstream.counters.lost
    assert lost_on_link > 10, relay.downstream.counters
    assert relay.upstream.counters.lost > 0  # pulls, NACKs and requests are lost too

    # Video lost on the link is asked for again and sent again, across the relay.
    pulled = edge.stats()["links"]["origins"][link]
    assert pulled["up"] and pulled["nacked"] > 0, pulled
    (served,) = origin.stats()["links"]["edges"].values()
    assert served["nacked"] > 0 and served["retransmitted"] > 0, served

    # An outage of the path: the attendee's picture breaks. Once the path is back (lossy
    # still), he asks for a keyframe as a browser does while its picture is broken (a
    # PLI every half second); the request crosses the link to the publisher on A (the
    # edge asks too, as its source resumed) and a keyframe comes back across it.
    relay.cut()
    await asyncio.sleep(0.8)
    relay.restore()
    restored = time.monotonic()
    requests = served["keyframe_requests"]
    (mid,) = [slot["mid"] for slot in media.slots if slot["name"] == "video"]
    (transceiver,) = [t for t in media.pc.getTransceivers() if t.mid == mid]
    crossed_at = None
    while crossed_at is None or not any(at > crossed_at and key for at, key, _ in video):
        assert time.monotonic() < restored + FOLLOW_S, "the picture did not come back"
        (served,) = origin.stats()["links"]["edges"].values()
        if crossed_at is None and served["keyframe_requests"] > requests:
            crossed_at = time.monotonic()
        pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=video[-1][2])
        await send_rtcp(transceiver.receiver.transport, pli)
        await asyncio.sleep(0.5)
    await frames_grow(media, 15)

    # A switch made on A reaches B's attendee on the same connection: the French
    # speaker on air, the French channel carries him directly.
    await moderator.send("put_on_air", speaker_id=FRENCH_SPEAKER)
    await media.hears("channel", FRENCH_HZ, within=FOLLOW_S)
    await frames_grow(media, 15)
