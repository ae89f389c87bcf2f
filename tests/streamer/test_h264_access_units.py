"""H.264 pieces without a network: RTP payloads back to access units (RFC 6184), what an
SPS says, the avcC and samples a file holds, and the refusals of input that cannot be
used; and the negotiation: which codec a node asks of a browser offering both."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from aiortc import RTCRtpSender
from aiortc.codecs.h264 import H264Encoder

from streamer import Sfu, SfuConfig
from streamer.errors import InvalidNetworkSetting, InvalidSdp
from streamer.frames import H264Frames
from streamer.h264 import (
    H264Error,
    avc_decoder_configuration,
    avcc_sample,
    depacketize,
    is_idr,
    nal_units,
    parameter_sets,
    read_sps,
)
from tests.streamer.peers import LOOPBACK, peer_connection
from tests.support.tones import PatternVideoTrack


def encoded(width: int, height: int, count: int = 3, profile: str = "baseline") -> list[bytes]:
    """Annex-B access units of x264, the first an IDR with its parameter sets."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, 90000)
    encoder.framerate = Fraction(30)
    # ultrafast turns off what the High profile has: it would write Baseline.
    preset = "ultrafast" if profile == "baseline" else "medium"
    encoder.options = {"preset": preset, "tune": "zerolatency", "profile": profile}
    units = []
    noise = np.random.default_rng(7)
    for index in range(count):
        # Noise: pictures big enough to be cut into fragments.
        image = noise.integers(0, 256, (height, width, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = index * 3000
        units.extend(bytes(packet) for packet in encoder.encode(frame))
    return units


@pytest.mark.parametrize(
    ("width", "height", "profile"),
    [(320, 240, "baseline"), (642, 362, "baseline"), (1280, 720, "high")],
)
def test_the_sps_gives_the_cropped_picture_size_and_codec(
    width: int, height: int, profile: str
) -> None:
    sps, _pps = parameter_sets(nal_units(encoded(width, height, 1, profile)[0])) or (b"", b"")
    parameters = read_sps(sps)
    assert (parameters.width, parameters.height) == (width, height)
    assert parameters.codec == "avc1." + sps[1:4].hex()
    assert parameters.codec.startswith("avc1.42" if profile == "baseline" else "avc1.64")


def test_aiortc_packets_become_the_access_units_they_were() -> None:
    """aiortc's own packetizer (STAP-A for parameter sets, FU-A for big slices) and back."""
    units = encoded(640, 480, 3)
    packets = H264Encoder._packetize(H264Encoder._split_bitstream(units[0]))
    assert any(p[0] & 0x1F == 28 for p in packets), "a big IDR should need FU-A fragments"
    assert any(p[0] & 0x1F == 24 for p in packets), "SPS and PPS should be aggregated"
    frames = H264Frames()
    stream = object()
    seq = 1000
    got = []
    for index, unit in enumerate(units):
        payloads = H264Encoder._packetize(H264Encoder._split_bitstream(unit))
        for position, payload in enumerate(payloads):
            last = position == len(payloads) - 1
            got.extend(f.data for f in frames.push(stream, seq, index * 3000, last, payload))
            seq += 1
    assert [nal_units(g) for g in got] == [nal_units(u) for u in units]
    assert is_idr(nal_units(got[0])) and not is_idr(nal_units(got[1]))


def test_a_lost_packet_waits_for_the_next_keyframe() -> None:
    units = encoded(640, 480, 3)
    frames = H264Frames()
    stream = object()
    seq = 0
    delivered = []
    for index, unit in enumerate(units + units[:1]):  # ..., then an IDR again
        payloads = H264Encoder._packetize(H264Encoder._split_bitstream(unit))
        for position, payload in enumerate(payloads):
            seq += 1
            if index == 1 and position == 0:
                continue  # lost
            last = position == len(payloads) - 1
            if frames.push(stream, seq, index * 3000, last, payload):
                delivered.append(index)
    # Frame 1 lost a packet; frame 2 refers to it: only the next IDR goes on.
    assert delivered == [0, 3]
    assert not frames.need_keyframe


def test_samples_and_avcc_decode_in_an_mp4(tmp_path) -> None:
    units = encoded(320, 240, 5)
    sps, pps = parameter_sets(nal_units(units[0])) or (b"", b"")
    config = avc_decoder_configuration(sps, pps)
    assert config[:1] == b"\x01" and config[4] == 0xFF  # version 1, 4-byte lengths
    sample = avcc_sample(nal_units(units[1]))
    assert int.from_bytes(sample[:4], "big") == len(nal_units(units[1])[0])
    path = tmp_path / "out.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("h264", rate=30)
        stream.codec_context.flags &= ~(1 << 22)
        stream.codec_context.width, stream.codec_context.height = 320, 240
        stream.codec_context.pix_fmt = "yuv420p"
        stream.codec_context.extradata = config
        stream.time_base = Fraction(1, 90000)
        for index, unit in enumerate(units):
            packet = av.Packet(avcc_sample(nal_units(unit)))
            packet.stream = stream
            packet.time_base = Fraction(1, 90000)
            packet.pts = packet.dts = index * 3000
            packet.is_keyframe = index == 0
            container.mux(packet)
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 5 and (frames[0].width, frames[0].height) == (320, 240)


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"", "holds no NAL unit"),
        (b"\x65", "holds no NAL unit"),
        (b"\xe5\x00", "forbidden bit"),
        (b"\x18\x00\x10\x67", "announces a NAL unit of 16 bytes where 1 remain"),
        (b"\x18\x00", "ends inside a NAL unit's size"),
        (b"\x19\x00\x01", "type 25 is not sent in packetization-mode 1"),
    ],
)
def test_unusable_payloads_are_refused_saying_why(payload: bytes, problem: str) -> None:
    with pytest.raises(H264Error, match=problem):
        depacketize(payload)
    frames = H264Frames()
    assert frames.push(object(), 1, 0, True, payload) == []
    assert frames.need_keyframe


@pytest.mark.parametrize(
    ("sps", "problem"),
    [
        (b"\x68\x42\x00\x1f", "not a sequence parameter set"),
        (b"\x67\x42\x00\x1f", "ends before its picture size"),
        (b"\x67\x42\x00\x1f\x00\x00\x00\x00\x00", "impossible Exp-Golomb code"),
    ],
)
def test_unreadable_sps_is_refused_saying_why(sps: bytes, problem: str) -> None:
    with pytest.raises(H264Error, match=problem):
        read_sps(sps)


async def answered_codec(video_codec: str, offer_sdp: str) -> str:
    sfu = Sfu(SfuConfig(ice_servers=[], host_addresses=LOOPBACK, video_codec=video_codec))  # type: ignore[arg-type]
    try:
        answer = await sfu.publish("speaker", offer_sdp)
    finally:
        await sfu.close()
    section = answer[answer.index("m=video") :]
    first = section.split("\r\n", 1)[0].split()[3]
    return section.split(f"a=rtpmap:{first} ", 1)[1].split("/", 1)[0]


async def video_offer(*only: str) -> str:
    """A publisher's offer: aiortc's video codecs (VP8 first), or `only` these."""
    pc = peer_connection()
    transceiver = pc.addTransceiver(PatternVideoTrack(), direction="sendonly")
    if only:
        codecs = RTCRtpSender.getCapabilities("video").codecs
        transceiver.setCodecPreferences([c for c in codecs if c.name in (*only, "rtx")])
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def test_the_node_asks_for_its_preferred_codec_and_accepts_the_other() -> None:
    offer = await video_offer()  # VP8 and H.264, VP8 first
    assert await answered_codec("h264", offer) == "H264"
    assert await answered_codec("vp8", offer) == "VP8"
    assert await answered_codec("h264", await video_offer("VP8")) == "VP8"
    assert await answered_codec("vp8", await video_offer("H264")) == "H264"


async def test_h264_in_packetization_mode_0_only_is_refused_saying_so() -> None:
    offer = (await video_offer()).replace("VP8/90000", "VP9/90000")
    offer = offer.replace("packetization-mode=1", "packetization-mode=0")
    sfu = Sfu(SfuConfig(ice_servers=[], host_addresses=LOOPBACK, video_codec="h264"))
    try:
        with pytest.raises(InvalidSdp, match=r"H264 \(packetization-mode 0\).*accepted: VP8, H264"):
            await sfu.publish("speaker", offer)
    finally:
        await sfu.close()


def test_an_unknown_video_codec_setting_is_refused() -> None:
    with pytest.raises(InvalidNetworkSetting, match="one of vp8, h264, not 'av1'"):
        Sfu(SfuConfig(video_codec="av1"))  # type: ignore[arg-type]
