"""The benchmark's clients: aiortc publishers and listeners, each group in its own process.

A publisher sends a sine tone (Opus, 20 ms frames) or synthetic bars (VP8 640x360, 30 fps,
or H.264 when its spec says so).
Most listeners are *light*: the receiver's packet handler is shadowed so they count packets
and keep the RTCP receiver-report statistics (the server still gets receiver reports) without
depacketising or decoding, which keeps the client side cheap enough to run a hundred of them
beside the server on a small machine. The first few listeners of a group are *full*: normal
aiortc receivers that decode, so the tone can be checked by FFT and video frames counted.

The processes are driven over a `multiprocessing` pipe with small dict commands (see
`publisher_process` and `listener_process`); the server is reached over the bench
signalling HTTP API (bench/sfu_server.py).
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import os
import time
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
import numpy as np
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.codecs import is_rtx
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket
from av import AudioFrame, VideoFrame

from signaling.demo.media import PacedTrack, audio_frame
from streamer.aiortc_internals import NodeCertificate, node_peer_connection, restrict_ice

AUDIO_RATE = 48000


#: Where benchmark peers and the benchmarked node gather host candidates, so the benchmark
#: never leaves the machine (aioice alone skips loopback).
LOOPBACK = ("127.0.0.1",)


_certificate: NodeCertificate | None = None


def new_peer() -> RTCPeerConnection:
    """A client peer connection on loopback. Every peer of a client process shares one
    DTLS certificate (generating one costs a few milliseconds of the cores the server
    is measured on; a browser would generate its own on its own machine)."""
    global _certificate
    if _certificate is None:
        _certificate = NodeCertificate.generateCertificate()
    pc = node_peer_connection(
        _certificate,
        # iceServers=[] on purpose: the aiortc default contacts a public STUN server.
        # Like browsers: one transport for every section (the server requires it).
        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE),
    )
    restrict_ice(pc, LOOPBACK)
    return pc


class ToneTrack(PacedTrack):
    """A real-time paced 48 kHz mono sine in 20 ms frames."""

    kind = "audio"

    def __init__(self, freq: float) -> None:
        super().__init__(50)
        self.freq = freq
        self.samples = AUDIO_RATE // 50

    async def recv(self) -> AudioFrame:
        index = await self.next_frame()
        t = (np.arange(self.samples) + index * self.samples) / AUDIO_RATE
        pcm = (0.3 * 32767 * np.sin(2 * np.pi * self.freq * t)).astype(np.int16)
        return audio_frame(pcm, index)


class BarsTrack(PacedTrack):
    """Real-time paced 640x360 video at 30 fps: moving bars, precomputed so they cost little."""

    kind = "video"

    def __init__(self, width: int = 640, height: int = 360, fps: int = 30) -> None:
        super().__init__(fps)
        self.width, self.height, self.fps = width, height, fps
        x = np.arange(width)[None, :]
        y = np.arange(height)[:, None]
        self._pictures = []
        for k in range(fps * 2):
            luma = ((x + 6 * k) % 200 + (y + 3 * k) % 56).astype(np.uint8)
            chroma = np.full((height // 2, width), 128, np.uint8)
            chroma[:, : width // 2] = (96 + 2 * k) % 256
            self._pictures.append(np.concatenate([luma, chroma]))  # yuv420p as one plane

    async def recv(self) -> VideoFrame:
        index = await self.next_frame()
        frame = VideoFrame.from_ndarray(self._pictures[index % len(self._pictures)], "yuv420p")
        frame.pts = index * (90000 // self.fps)
        frame.time_base = fractions.Fraction(1, 90000)
        return frame


def dominant_freq(pcm: np.ndarray) -> float:
    pcm = pcm.astype(np.float64) - pcm.mean()
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1.0 / AUDIO_RATE)[int(np.argmax(spectrum))])


def vp8_keyframe_size(payload: bytes) -> tuple[int, int] | None:
    """Width and height if this RTP payload starts a VP8 key frame (RFC 7741 descriptor)."""
    if len(payload) < 13 or not payload[0] & 0x10 or payload[0] & 0x07:
        return None
    i = 1
    if payload[0] & 0x80:
        ext = payload[1]
        i = 2
        if ext & 0x80:
            i += 2 if payload[i] & 0x80 else 1
        if ext & 0x40:
            i += 1
        if ext & 0x30:
            i += 1
    f = payload[i:]
    if len(f) < 10 or f[0] & 1 or f[3:6] != b"\x9d\x01\x2a":
        return None
    return int.from_bytes(f[6:8], "little") & 0x3FFF, int.from_bytes(f[8:10], "little") & 0x3FFF


class Listener:
    """One subscriber peer connection receiving one stream."""

    def __init__(self, kind: str, full: bool) -> None:
        self.kind, self.full = kind, full
        self.pc = new_peer()
        self.packets = self.octets = self.lost = self.frames = 0
        self.last_seq: int | None = None
        self.keyframes: set[tuple[int, int]] = set()
        self.sizes: set[tuple[int, int]] = set()
        self.pcm: collections.deque[np.ndarray] = collections.deque(maxlen=100)
        self.consumer: asyncio.Task[None] | None = None
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        receiver = next(t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track)
        original = receiver._handle_rtp_packet
        codecs = receiver._RTCRtpReceiver__codecs
        streams = receiver._RTCRtpReceiver__remote_streams

        async def handle(packet: Any, arrival_time_ms: int) -> None:
            codec = codecs.get(packet.payload_type)
            if codec is None or is_rtx(codec):
                if self.full:
                    await original(packet, arrival_time_ms)
                return
            self._count(packet)
            if self.full:
                await original(packet, arrival_time_ms)
            else:  # keep receiver reports true, skip the jitter buffer and decoder
                stats = streams.get(packet.ssrc)
                if stats is None:
                    stats = streams[packet.ssrc] = StreamStatistics(codec.clockRate)
                stats.add(packet)

        receiver._handle_rtp_packet = handle
        if self.full:
            self.consumer = asyncio.ensure_future(self._consume(track))

    def _count(self, packet: Any) -> None:
        self.packets += 1
        self.octets += len(packet.payload)
        if self.last_seq is not None:
            gap = (packet.sequence_number - self.last_seq) & 0xFFFF
            if 1 < gap < 3000:
                self.lost += gap - 1
        self.last_seq = packet.sequence_number
        if self.kind == "video" and packet.payload[:1] and packet.payload[0] & 0x10:
            size = vp8_keyframe_size(packet.payload)
            if size:
                self.keyframes.add(size)

    async def _consume(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.frames += 1
            if self.kind == "audio":
                a = frame.to_ndarray()
                self.pcm.append(a[0, ::2] if frame.layout.name == "stereo" else a[0])
            else:
                self.sizes.add((frame.width, frame.height))

    def tone(self, frames: int = 100) -> float | None:
        pcm = list(self.pcm)[-frames:]
        return dominant_freq(np.concatenate(pcm)) if len(pcm) >= min(frames, 25) else None

    def snapshot(self) -> tuple[int, int, int, int, float]:
        return self.packets, self.octets, self.lost, self.frames, time.monotonic()

    async def close(self) -> None:
        if self.consumer:
            self.consumer.cancel()
        await self.pc.close()


async def receive(conn: Connection) -> Any:
    """Await the next command on a pipe without a thread."""
    loop = asyncio.get_running_loop()
    if not conn.poll():
        ready = loop.create_future()
        loop.add_reader(conn.fileno(), lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            loop.remove_reader(conn.fileno())
    return conn.recv()


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


async def post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with http.post(url, json=body) as r:
        data = await r.json()
        if r.status != 200:
            raise RuntimeError(f"{url}: {r.status} {data}")
        return data


def hold_bitrate(sender: RTCRtpSender) -> None:
    """Ignore REMB, so the encoder stays at aiortc's default 500 kbps whatever the SFU
    estimates: the per-subscriber cost is then compared at one bitrate, as in the Janus run."""
    original = sender._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            return
        await original(packet)

    sender._handle_rtcp_packet = handle


async def _publishers(conn: Connection, cfg: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as http:
        peers = []
        for spec in cfg["publishers"]:
            pc = new_peer()
            track = ToneTrack(spec["freq"]) if spec["kind"] == "audio" else BarsTrack()
            sender = pc.addTrack(track)
            if spec["kind"] == "video" and not cfg.get("adaptive", False):
                hold_bitrate(sender)
            if spec.get("codec"):
                # Offer this codec only (as a browser that can send nothing else).
                transceiver = next(t for t in pc.getTransceivers() if t.sender is sender)
                codecs = RTCRtpSender.getCapabilities(spec["kind"]).codecs
                wanted = (spec["codec"].lower(), "rtx")
                transceiver.setCodecPreferences([c for c in codecs if c.name.lower() in wanted])
            await pc.setLocalDescription(await pc.createOffer())
            answer = await post(
                http, cfg["url"] + "/publish", {"id": spec["id"], "sdp": pc.localDescription.sdp}
            )
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
            peers.append((pc, sender))
        for _ in range(200):
            if all(pc.connectionState == "connected" for pc, _ in peers):
                break
            await asyncio.sleep(0.05)
        conn.send({"states": [pc.connectionState for pc, _ in peers]})
        mark: list[tuple[int, int]] = []
        t0 = c0 = 0.0
        while True:
            msg = await receive(conn)
            if msg["cmd"] == "mark":
                mark = [
                    (s._RTCRtpSender__packet_count, s._RTCRtpSender__octet_count) for _, s in peers
                ]
                t0, c0 = time.monotonic(), cpu_seconds()
                conn.send({})
            elif msg["cmd"] == "report":
                wall = time.monotonic() - t0
                now = [
                    (s._RTCRtpSender__packet_count, s._RTCRtpSender__octet_count) for _, s in peers
                ]
                conn.send(
                    {
                        "pps": [
                            round((b[0] - a[0]) / wall, 1) for a, b in zip(mark, now, strict=True)
                        ],
                        "kbps": [
                            round(8 * (b[1] - a[1]) / wall / 1000, 1)
                            for a, b in zip(mark, now, strict=True)
                        ],
                        "cpu": (cpu_seconds() - c0) / wall,
                    }
                )
            elif msg["cmd"] == "stop":
                await asyncio.gather(*(pc.close() for pc, _ in peers), return_exceptions=True)
                conn.send({})
                return


async def _listeners(conn: Connection, cfg: dict[str, Any]) -> None:
    kind = cfg["kind"]
    listeners: list[Listener] = []
    marks: list[tuple[int, int, int, int, float]] = []
    c0 = t0 = 0.0
    async with aiohttp.ClientSession() as http:
        gate = asyncio.Semaphore(8)

        async def join(listener: Listener, sid: str, slots: dict[str, str]) -> None:
            async with gate:
                offer = await post(http, cfg["url"] + "/subscribe", {"id": sid, "slots": slots})
                await listener.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
                await listener.pc.setLocalDescription(await listener.pc.createAnswer())
                await post(
                    http,
                    cfg["url"] + "/answer",
                    {"id": sid, "sdp": listener.pc.localDescription.sdp},
                )

        while True:
            msg = await receive(conn)
            if msg["cmd"] == "add":
                fresh = [Listener(kind, full=i < msg["full"]) for i in range(msg["n"])]
                first = len(listeners)
                listeners += fresh
                t = time.monotonic()
                await asyncio.gather(
                    *(
                        join(x, f"{cfg['name']}-{first + i}", msg["slots"])
                        for i, x in enumerate(fresh)
                    )
                )
                deadline = time.monotonic() + 20 + 0.3 * len(fresh)
                # Polling: "connected and receiving" has no single event to wait on.
                while time.monotonic() < deadline and not all(  # noqa: ASYNC110
                    x.pc.connectionState == "connected" and x.packets for x in fresh
                ):
                    await asyncio.sleep(0.1)
                ready = sum(x.pc.connectionState == "connected" and x.packets > 0 for x in fresh)
                conn.send({"ready": ready, "join_s": round(time.monotonic() - t, 1)})
            elif msg["cmd"] == "mark":
                marks = [x.snapshot() for x in listeners]
                c0, t0 = cpu_seconds(), time.monotonic()
                conn.send({})
            elif msg["cmd"] == "report":
                out = []
                for x, a in zip(listeners, marks, strict=True):
                    b = x.snapshot()
                    wall = b[4] - a[4]
                    row: dict[str, Any] = {
                        "full": x.full,
                        "pps": (b[0] - a[0]) / wall,
                        "kbps": 8 * (b[1] - a[1]) / wall / 1000,
                        "lost": b[2] - a[2],
                        "connected": x.pc.connectionState == "connected",
                    }
                    if x.full and kind == "audio":
                        row["freq"] = x.tone()
                    if x.full and kind == "video":
                        row["fps_decoded"] = (b[3] - a[3]) / wall
                        row["sizes"] = sorted(x.sizes)
                    if kind == "video":
                        row["keyframes"] = sorted(x.keyframes)
                    out.append(row)
                conn.send({"listeners": out, "cpu": (cpu_seconds() - c0) / (time.monotonic() - t0)})
            elif msg["cmd"] == "tone":
                conn.send({"freqs": [x.tone(msg.get("frames", 25)) for x in listeners if x.full]})
            elif msg["cmd"] == "stop":
                await asyncio.gather(*(x.close() for x in listeners), return_exceptions=True)
                conn.send({})
                return


def publisher_process(conn: Connection, cfg: dict[str, Any]) -> None:
    """Entry point: publish cfg["publishers"] ({id, kind, freq}, and "codec" to offer only
    that one) to cfg["url"], then obey."""
    asyncio.run(_publishers(conn, cfg))


def listener_process(conn: Connection, cfg: dict[str, Any]) -> None:
    """Entry point: subscribe listeners of cfg["kind"] on command, report their counters."""
    asyncio.run(_listeners(conn, cfg))
