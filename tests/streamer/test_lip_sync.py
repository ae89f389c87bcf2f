"""Lip sync: a speaker's video and the audio heard with it reach the subscriber as one
media stream, with sender reports that tell the truth about when each packet left.

A browser keeps two tracks in sync only when they share a stream id (msid), and it
does so from each stream's RTCP sender reports: the NTP time they give a packet's
RTP timestamp, against when the packet arrived. Here a real aiortc publisher sends
audio and video; the subscriber records every packet's arrival and every sender
report, and the audio/video offset its sync would see must stay inside ITU-R
BT.1359's window (sound at most 45 ms ahead of the picture, at most 125 ms behind).
"""

from __future__ import annotations

import re
import statistics
import time

from aiortc.rtp import RtcpSrPacket, RtpPacket

from streamer import Sfu
from tests.streamer.conftest import Peers
from tests.streamer.peers import eventually
from tests.support.aiortc_probes import observe_received_rtcp, observe_received_rtp
from tests.support.tones import PatternVideoTrack, ToneTrack

NTP_SECOND = 1 << 32


class StreamTiming:
    """Arrivals and sender reports of one received stream."""

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.arrivals: list[tuple[float, int]] = []  # (local wall time, RTP timestamp)
        self.reports: list[tuple[int, int]] = []  # (NTP timestamp, RTP timestamp)

    def packet(self, packet: RtpPacket) -> None:
        self.arrivals.append((time.time(), packet.timestamp))

    def rtcp(self, packet: object) -> None:
        if isinstance(packet, RtcpSrPacket):
            info = packet.sender_info
            self.reports.append((info.ntp_timestamp, info.rtp_timestamp))

    def sender_time(self, rtp_timestamp: int) -> float:
        """Seconds (NTP scale) the newest report gives this timestamp."""
        ntp, rtp = self.reports[-1]
        elapsed = ((rtp_timestamp - rtp + 0x8000_0000) & 0xFFFF_FFFF) - 0x8000_0000
        return ntp / NTP_SECOND + elapsed / self.clock_rate

    def lead(self) -> float:
        """Median of (sender time - arrival time) over packets after the first report."""
        return statistics.median(
            self.sender_time(rtp) - arrived for arrived, rtp in self.arrivals[-100:]
        )


async def test_speaker_audio_and_video_share_a_stream_and_stay_in_sync(
    sfu: Sfu, peers: Peers
) -> None:
    await peers.publisher("speaker", [ToneTrack(1000), PatternVideoTrack()])
    sfu.declare_output("program-video", "video")
    sfu.declare_output("floor", "audio")
    sfu.point("program-video", "speaker/video")
    sfu.point("floor", "speaker/audio")
    viewer = await peers.subscriber(
        "viewer",
        {"video": "program-video", "voice": "floor"},
        streams={"video": "program", "voice": "program"},
    )
    # One stream id on both sections: the browser syncs them.
    msids = re.findall(r"^a=msid:(\S+) ", viewer.pc.remoteDescription.sdp, flags=re.MULTILINE)
    assert msids == ["program", "program"]

    timing = {"video": StreamTiming(90000), "voice": StreamTiming(48000)}
    for name, transceiver in zip(["video", "voice"], viewer.pc.getTransceivers(), strict=True):
        observe_received_rtp(transceiver.receiver, timing[name].packet, decode=False)
        observe_received_rtcp(transceiver.receiver, timing[name].rtcp)
    await eventually(
        lambda: all(len(t.reports) >= 3 and len(t.arrivals) >= 100 for t in timing.values()),
        within=20,
        what="three sender reports on each stream",
    )
    # How much earlier the sound is presented than the picture it belongs with.
    audio_ahead_ms = (timing["video"].lead() - timing["voice"].lead()) * 1000
    print(f"audio ahead of video: {audio_ahead_ms:.1f} ms")
    assert -125 <= audio_ahead_ms <= 45, f"audio ahead of video by {audio_ahead_ms:.1f} ms"


async def test_slots_without_a_stream_name_get_a_stream_each_and_bad_names_are_refused(
    sfu: Sfu, peers: Peers
) -> None:
    sfu.declare_output("floor", "audio")
    sfu.declare_output("channel-fr", "audio")
    offer = await sfu.subscribe("listener", {"voice": "channel-fr", "original": "floor"})
    msids = re.findall(r"^a=msid:(\S+) ", offer, flags=re.MULTILINE)
    assert len(set(msids)) == 2
    await sfu.close_subscriber("listener")
    for streams, problem in (
        ({"voice": "a b"}, "stream name"),
        ({"voice": "x" * 65}, "stream name"),
        ({"nothing": "program"}, "not a slot"),
    ):
        try:
            await sfu.subscribe("listener", {"voice": "channel-fr"}, streams)
        except Exception as exc:
            assert problem in str(exc)
        else:
            raise AssertionError(f"{streams} was accepted")
