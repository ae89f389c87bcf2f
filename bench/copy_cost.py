"""What one copy of one packet costs the forwarding loop, part by part, in one process.

The real `Forwarder`, `Output`, `Slot` and `SenderLink.send` forward packets to N slots;
each slot's link protects with a real libsrtp session (AEAD AES-128-GCM, as browsers
negotiate) and sends on its own UDP socket, connected to a receiving socket, as a
subscriber's selected ICE pair is. No aiortc peer connection, no event loop: the links are
wired by hand (the attributes `SenderLink._start` and `_select` would set), so the figure is
the forwarding loop's and the kernel's, nothing else.

Each variant takes one part away (VP8 picture-id arithmetic, the NACK history, SRTP, the
socket's send) and the difference is what that part costs. CPU is the process's user and
system time (getrusage) around the forwarding calls only; each variant runs `--rounds`
rounds and the median round is printed.

The receivers either sit in this process and are drained between bursts (the kernel's
send path alone), or, with `--receivers-asleep`, in child processes blocked in select, as
real subscribers are: then every burst also pays for waking them.

`--cold` forwards as a server does: one packet at a time, 15 ms apart, and before each
the CPU caches are swept (`--sweep-mib` of memory copied, outside the measured time) as the
subscribers' processes and everything else on the machine sweep them between two packets
of a channel. A copy then finds its slot's objects, its SRTP context and its socket out of
the cache, which is what the per-subscriber figures of a real server (bench/vs_janus.py)
measure; bursts of back-to-back packets measure the same code with warm caches.

    python -m bench.copy_cost                          # video, 50 slots
    python -m bench.copy_cost --kind audio --n 100
    python -m bench.copy_cost --receivers-asleep --json
    python -m bench.copy_cost --receivers-asleep --cold --packets 300 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import signal
import socket
import sys
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pylibsrtp
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from streamer import aiortc_internals
from streamer.aiortc_internals import NegotiatedSend, SenderLink, SrtpProtector
from streamer.forwarder import Forwarder
from streamer.negotiation import ABS_SEND_TIME_URI, AUDIO_LEVEL_URI, MID_URI
from streamer.output import Output
from streamer.subscriber import Slot
from streamer.vp8_munger import Vp8Munger

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
#: A 500 kbit/s VP8 packet, and an Opus one.
VIDEO_PAYLOAD = 1100
AUDIO_PAYLOAD = 80
#: Packets forwarded back to back before the receivers are drained (a video frame's worth).
BURST = 20
#: Time between two packets when the receivers sleep, or the caches are swept.
PAUSE_S = 0.015

VARIANTS = ("everything", "no picture ids", "no history", "no SRTP", "no send")


@dataclass
class Bench:
    kind: str
    n: int
    packets: int
    rounds: int
    receivers_asleep: bool
    #: MiB of memory swept between two packets, one packet at a time (0: warm bursts).
    sweep_mib: int = 0


class Rig:
    """N slots on one output fed by one forwarder, their links wired to real sockets."""

    def __init__(self, kind: str, n: int) -> None:
        self.kind = kind
        self.codec = VP8 if kind == "video" else OPUS
        self.receivers: list[socket.socket] = []
        self.output = Output(name="program", kind=kind)

        async def no_upstream(urgent: bool) -> bool:
            return False

        self.forwarder = Forwarder(kind, no_upstream)
        ids = {MID_URI: 1, ABS_SEND_TIME_URI: 2, AUDIO_LEVEL_URI: 2}
        for i in range(n):
            slot = Slot(f"s{i}", kind, self.output)
            slot.link = self._link(1000 + i)
            self.output.attach(slot)
            slot.start(
                NegotiatedSend(
                    mid=str(i),
                    payload_types={self.codec.mimeType.lower(): self.codec.payloadType},
                    rtx_payload_types={},
                    nack=kind == "video",
                    extension_ids=ids,
                )
            )
        self.forwarder.add_output(self.output)
        self._next_seq = 0

    def _link(self, ssrc: int) -> SenderLink:
        link = object.__new__(SenderLink)
        policy = pylibsrtp.Policy(
            key=os.urandom(28),
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
        )
        link._protect = SrtpProtector(pylibsrtp.Session(policy)).protect
        link._dtls = types.SimpleNamespace(_state=aiortc_internals._CONNECTED)
        pair = object()
        link._nominated = {1: pair}
        link._pair = pair
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.bind(("127.0.0.1", 0))
        sender.connect(receiver.getsockname())
        sender.setblocking(False)
        self.receivers.append(receiver)
        link._send = sender.send
        link.ssrc, link.rtx_ssrc = ssrc, ssrc + 100_000
        link.closed = False
        link.packet_count = link.octet_count = link.ntp_timestamp = link.rtp_timestamp = 0
        link.dropped = 0
        return link

    def packets(self, count: int) -> list[RtpPacket]:
        """The next `count` packets of the stream (3 a frame for video)."""
        made = []
        for k in range(self._next_seq, self._next_seq + count):
            packet = RtpPacket(
                payload_type=self.codec.payloadType,
                sequence_number=k & 0xFFFF,
                timestamp=((k // 3) * 3000) & 0xFFFFFFFF,
                ssrc=77,
                marker=k % 3 == 2,
            )
            if self.kind == "video":
                picture_id = (k // 3) & 0x7FFF
                keyframe = 0x00 if k == 0 else 0x01
                descriptor = bytes((0x90, 0x80, 0x80 | picture_id >> 8, picture_id & 0xFF))
                packet.payload = descriptor + bytes((keyframe,)) + bytes(VIDEO_PAYLOAD)
            else:
                packet.payload = bytes(AUDIO_PAYLOAD)
                packet.extensions.audio_level = (True, 40)
            made.append(packet)
        self._next_seq += count
        return made

    def drain(self) -> None:
        for receiver in self.receivers:
            try:
                while True:
                    receiver.recv(4096)
            except BlockingIOError:
                pass

    @contextmanager
    def asleep(self) -> Iterator[None]:
        """The receivers in child processes blocked in select (as subscribers are)."""
        mine, self.receivers = self.receivers, []
        try:
            with receivers_asleep(mine):
                yield
        finally:
            self.receivers = mine

    def measure(self, packets: int, pause_s: float, sweep_mib: int = 0) -> tuple[float, float]:
        """User and system CPU-us per copy over `packets` packets.

        With `sweep_mib`, packets go one at a time, each after a sweep of the caches.
        """
        stream = self.packets(packets)
        forward, codec = self.forwarder.forward, self.codec
        burst = 1 if sweep_mib else BURST
        sweep = CacheSweep(sweep_mib) if sweep_mib else None
        user = system = 0.0
        for start in range(0, packets, burst):
            if sweep is not None:
                sweep.run()
            before = resource.getrusage(resource.RUSAGE_SELF)
            for packet in stream[start : start + burst]:
                forward(packet, codec)
            after = resource.getrusage(resource.RUSAGE_SELF)
            user += after.ru_utime - before.ru_utime
            system += after.ru_stime - before.ru_stime
            self.drain()
            if pause_s:
                time.sleep(pause_s)
        copies = packets * len(self.output.sinks)
        return user / copies * 1e6, system / copies * 1e6


class CacheSweep:
    """Evicts this core's caches by copying a buffer larger than them."""

    def __init__(self, mib: int) -> None:
        self._source = bytearray(os.urandom(1 << 20)) * mib
        self._target = bytearray(len(self._source))

    def run(self) -> None:
        self._target[:] = self._source


@contextmanager
def receivers_asleep(sockets: list[socket.socket], processes: int = 5) -> Iterator[None]:
    """`sockets` drained by `processes` child processes blocked in select."""
    children = []
    for share in range(processes):
        pid = os.fork()
        if pid == 0:
            _drain_forever(sockets[share::processes])
        children.append(pid)
    try:
        yield
    finally:
        for pid in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def _drain_forever(sockets: list[socket.socket]) -> None:
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
    try:
        while True:
            for key, _ in selector.select():
                try:
                    while True:
                        key.fileobj.recv(4096)  # type: ignore[union-attr]
                except BlockingIOError:
                    pass
    finally:
        os._exit(0)


@contextmanager
def variant(rig: Rig, name: str) -> Iterator[None]:
    """`rig` with one part taken away."""
    saved: list[tuple[object, str, object]] = []

    def swap(owner: object, attribute: str, value: object) -> None:
        saved.append((owner, attribute, getattr(owner, attribute)))
        setattr(owner, attribute, value)

    identity: Callable[..., object] = lambda *args: args[-1]  # noqa: E731
    slots = rig.output.sinks
    if name == "no picture ids":
        swap(Vp8Munger, "munge", identity)
    for slot in slots:
        if name == "no history":
            swap(slot, "history", None)
        elif name == "no SRTP":
            swap(slot.link, "_protect", identity)
        elif name == "no send":
            swap(slot.link, "_send", identity)
    try:
        yield
    finally:
        for owner, attribute, value in reversed(saved):
            setattr(owner, attribute, value)


def run(bench: Bench) -> dict[str, object]:
    rig = Rig(bench.kind, bench.n)
    rig.measure(min(300, bench.packets), 0.0)  # warm-up (the first packet is a keyframe)
    pause_s = PAUSE_S if bench.receivers_asleep or bench.sweep_mib else 0.0
    rows = {}
    with rig.asleep() if bench.receivers_asleep else _nothing():
        for name in VARIANTS:
            with variant(rig, name):
                rounds = [
                    rig.measure(bench.packets, pause_s, bench.sweep_mib)
                    for _ in range(bench.rounds)
                ]
            user, system = sorted(rounds, key=sum)[len(rounds) // 2]
            rows[name] = {"user_us": round(user, 2), "system_us": round(system, 2)}
    sent = rig.output.sinks[0].counters.packets
    return {
        "kind": bench.kind,
        "slots": bench.n,
        "packets_per_round": bench.packets,
        "rounds": bench.rounds,
        "receivers_asleep": bench.receivers_asleep,
        "sweep_mib": bench.sweep_mib,
        "sent_to_first_slot": sent,
        "per_copy": rows,
    }


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def table(result: dict[str, object]) -> str:
    rows = result["per_copy"]
    assert isinstance(rows, dict)
    total = sum(rows["everything"].values())
    lines = [
        f"{result['kind']}, {result['slots']} slots, receivers "
        + ("asleep in other processes" if result["receivers_asleep"] else "drained in process")
        + (
            f", one packet at a time after a {result['sweep_mib']} MiB cache sweep"
            if result["sweep_mib"]
            else f", bursts of {BURST} packets"
        ),
        "",
        "| variant | user us/copy | system us/copy | total | the part taken away |",
        "|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        here = row["user_us"] + row["system_us"]
        part = "-" if name == "everything" else f"{total - here:.2f}"
        user, system = row["user_us"], row["system_us"]
        lines.append(f"| {name} | {user:.2f} | {system:.2f} | {here:.2f} | {part} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=("audio", "video"), default="video")
    parser.add_argument("--n", type=int, default=50, help="slots")
    parser.add_argument("--packets", type=int, default=3000, help="packets a round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--receivers-asleep", action="store_true")
    parser.add_argument(
        "--cold", action="store_true", help="one packet at a time, caches swept before each"
    )
    parser.add_argument("--sweep-mib", type=int, default=16, help="with --cold (default 16)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    for name in ("n", "packets", "rounds", "sweep_mib"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} is at least 1, not {getattr(args, name)}")
    if args.receivers_asleep and args.n < 5:
        parser.error("--receivers-asleep spreads the receivers over 5 processes: --n 5 at least")
    sweep_mib = args.sweep_mib if args.cold else 0
    bench = Bench(args.kind, args.n, args.packets, args.rounds, args.receivers_asleep, sweep_mib)
    result = run(bench)
    print(json.dumps(result) if args.json else table(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
