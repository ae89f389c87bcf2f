"""What a bad network does to an attendee: loss after NACK, concealment, freezes, switches,
recovery after an outage, beside a baseline measured in the same run.

Runs a real node (the `dragoman serve` application, embedded SQLite store) whose media
ports sit behind the user-space UDP relay of `testbed/impaired_network.py`; two speakers
(aiortc publishers speaking the live WebSocket protocol: VP8 320x240 and 480x360 at
30 fps, each with an Opus tone) and a headless Chromium attendee reach the node only
through it (their SDP carries no candidates). Each run measures two phases, interleaved:

- ``loopback``: the relay impairs nothing (the baseline: the same path, one user-space
  hop more than plain loopback);
- ``impaired``: both ways, 5 % loss, 10 ms delay plus 0-30 ms jitter (which reorders),
  2 % of datagrams held back 20 ms more, 1 % duplicated.

A phase opens a fresh attendee page, waits for its first decoded frames, then over a
window of ``--window`` seconds the moderator switches speakers ``--switches`` times;
finally the relay cuts everything (publishers included) for ``--outage`` seconds.

Measured, from the attendee page's getStats() over the window (differences of the
counters between its start and end): video packetsLost against what the relay dropped on
the attendee's video stream (counted by its SSRC) and on the publishers' video. Chromium
counts a packet repaired by RTX as lost all the same (the retransmission arrives on the
RTX SSRC; with loss on the attendee's leg only, packetsLost equals the relay's drops to
the packet while as many retransmissions are received), so what NACK did not repair is
estimated as packetsLost - retransmittedPacketsReceived, a lower bound (with jitter the
page NACKs packets that were only late too), beside the PLIs the page sent (its decoder
giving up on a picture). Then audio concealed (concealedSamples /
totalSamplesReceived); video freezeCount, totalFreezesDuration, pauseCount.

The switch: from the moment the moderator's `put_on_air` is sent to the first frame of
the new speaker's size that the page presents, read with `requestVideoFrameCallback` (its
presentationTime, and the receiveTime of that frame's last packet), both on the machine's
wall clock (`performance.timeOrigin + ...` in the page, `time.time()` here).

The outage: from `restore()` to the first poll (every 50 ms) in which the attendee's audio
packetsReceived grows again (on any of its peer connections: a page that reconnects makes
a new one), and to its first video frame presented after it. If audio does not come back
within `--recovery-timeout` seconds, that is printed, not raised.

    python -m bench.network                # 3 runs
    python -m bench.network --runs 5 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from playwright.async_api import Browser, Page, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from bench.join import launch
from bench.peers import BarsTrack, ToneTrack, hold_bitrate, new_peer
from signaling.app import SIGNER_KEY, create_app, make_runner
from signaling.settings import load_settings
from signaling.tokens import Role
from testbed.impaired_network import (
    PAGE_BEHIND_NAT,
    RELAY_HOST,
    Impairment,
    UdpRelay,
    relayed_node_settings,
    strip_candidates,
)
from testbed.ports import free_udp_range

SPEAKERS = {  # speaker id -> (frame size, tone)
    "alexander-tokovinin": ((320, 240), 1000.0),
    "andre-samray": ((480, 360), 440.0),
}
NO_IMPAIRMENT = Impairment()
BAD_WIFI = Impairment(
    loss=0.05, delay_ms=10, jitter_ms=30, duplicate=0.01, reorder=0.02, reorder_ms=20
)
CONDITIONS = {"loopback": NO_IMPAIRMENT, "impaired": BAD_WIFI}

#: Every frame the page presents, by requestVideoFrameCallback: size changes (with when the
#: frame was presented and when its last packet arrived) and gaps of over a second.
FRAME_LOG = r"""
window.addEventListener("DOMContentLoaded", () => {
  const video = document.getElementById("program-video");
  const log = { sizes: [], gaps: [], frames: 0, last: null };
  window.dragomanFrames = log;
  const wall = (t) => (t === undefined ? null : performance.timeOrigin + t);
  const onFrame = (now, meta) => {
    const at = wall(meta.presentationTime);
    log.frames += 1;
    const previous = log.sizes[log.sizes.length - 1];
    if (!previous || previous.width !== meta.width || previous.height !== meta.height) {
      log.sizes.push({ at, received: wall(meta.receiveTime), width: meta.width,
                       height: meta.height });
    }
    if (log.last !== null && at - log.last > 1000) log.gaps.push({ from: log.last, to: at });
    log.last = at;
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
});
"""
#: The counters of the page's newest open peer connection (a re-subscription starts anew),
#: and every peer connection's audio packetsReceived (to see audio flow again after an
#: outage, on whichever connection it comes back).
STATS = """
async () => {
  const peers = window.dragomanPeers;
  const open = peers.filter((pc) => pc.connectionState !== "closed");
  const newest = open[open.length - 1];
  const out = { video: {}, audio: { concealedSamples: 0, totalSamplesReceived: 0 },
                audioPackets: [] };
  for (const pc of peers) {
    let packets = 0;
    if (pc.connectionState !== "closed") {
      (await pc.getStats()).forEach((r) => {
        if (r.type !== "inbound-rtp" || r.kind !== "audio") return;
        packets += r.packetsReceived ?? 0;
        if (pc === newest) {
          out.audio.concealedSamples += r.concealedSamples ?? 0;
          out.audio.totalSamplesReceived += r.totalSamplesReceived ?? 0;
        }
      });
    }
    out.audioPackets.push(packets);
  }
  if (newest) {
    (await newest.getStats()).forEach((r) => {
      if (r.type !== "inbound-rtp" || r.kind !== "video") return;
      for (const key of ["ssrc", "rtxSsrc", "packetsReceived", "packetsLost", "nackCount",
                         "pliCount", "framesDecoded", "keyFramesDecoded", "freezeCount",
                         "pauseCount", "totalFreezesDuration", "frameWidth", "frameHeight",
                         "retransmittedPacketsReceived"]) {
        out.video[key] = r[key] ?? null;
      }
    });
  }
  return out;
}
"""


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot: the machine is shared."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Client:
    """One authenticated WebSocket of the live protocol; a reader task keeps its messages."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.state: dict[str, Any] | None = None
        self._messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.ensure_future(self._read())
        self._counter = 0

    async def _read(self) -> None:
        async for frame in self.ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            message = json.loads(frame.data)
            if message["type"] == "state":
                self.state = message
            else:
                await self._messages.put(message)

    async def send(self, type_: str, **fields: Any) -> None:
        self._counter += 1
        await self.ws.send_str(json.dumps({"type": type_, "id": self._counter, **fields}))

    async def next(self, type_: str, within: float = 15.0) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                message = await self._messages.get()
                if message["type"] == type_:
                    return message
                if message["type"] == "error":
                    raise RuntimeError(f"the node refused: {message}")

    def refusals(self) -> list[dict[str, Any]]:
        """The errors received and not read yet (commands the node refused)."""
        errors = []
        while not self._messages.empty():
            message = self._messages.get_nowait()
            if message["type"] == "error":
                errors.append(message)
        return errors

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def video_ssrcs(sdp: str) -> list[int]:
    """The SSRCs (media, then RTX) a publisher's offer announces for its video."""
    video = sdp[sdp.index("m=video") :]
    group = re.search(r"a=ssrc-group:FID (\d+) (\d+)", video)
    if group:
        return [int(group.group(1)), int(group.group(2))]
    return [int(x) for x in dict.fromkeys(re.findall(r"a=ssrc:(\d+)", video))]


async def publish(client: Client, *tracks: Any) -> tuple[RTCPeerConnection, list[int]]:
    pc = new_peer()
    for track in tracks:
        transceiver = pc.addTransceiver(track, direction="sendonly")
        if track.kind == "video":
            # Both phases carry the same stream: the node relays its bandwidth estimate
            # (REMB), which would otherwise move the encoder's bitrate between them.
            hold_bitrate(transceiver.sender)
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    # Without candidates the node reaches the publisher only through the relay.
    await client.send("offer", purpose="publish", sdp=strip_candidates(sdp))
    answer = await client.next("answer")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    return pc, video_ssrcs(sdp)


def delta(after: dict[str, Any], before: dict[str, Any], key: str) -> float:
    return (after.get(key) or 0) - (before.get(key) or 0)


class Bench:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.relay: UdpRelay | None = None
        self.moderator: Client | None = None
        self.on_air = next(iter(SPEAKERS))
        self.publisher_video: list[int] = []
        self.publishers: list[RTCPeerConnection] = []

    async def switch(self, page: Page, speaker_id: str) -> dict[str, Any]:
        assert self.moderator is not None
        size = SPEAKERS[speaker_id][0]
        self.moderator.refusals()
        sent = time.time() * 1000
        await self.moderator.send("put_on_air", speaker_id=speaker_id)
        self.on_air = speaker_id
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            sizes = await page.evaluate("window.dragomanFrames.sizes")
            for entry in sizes:
                if entry["at"] > sent and (entry["width"], entry["height"]) == size:
                    received = entry["received"]
                    return {
                        "speaker": speaker_id,
                        "presented_ms": entry["at"] - sent,
                        "received_ms": None if received is None else received - sent,
                    }
            await asyncio.sleep(0.05)
        # Never shown: say what the node and the publishers were doing.
        return {
            "speaker": speaker_id,
            "presented_ms": None,
            "received_ms": None,
            "refused": self.moderator.refusals(),
            "on_air": (self.moderator.state or {}).get("on_air"),
            "publishing": (self.moderator.state or {}).get("publishers", {}).get("speakers"),
            "publisher_connections": [pc.connectionState for pc in self.publishers],
        }

    async def phase(self, browser: Browser, link: str, condition: str) -> dict[str, Any]:
        relay, options = self.relay, self.options
        assert relay is not None and self.moderator is not None
        relay.set_impairment(CONDITIONS[condition])
        context = await browser.new_context(locale="en-US")
        context.set_default_timeout(20_000)
        try:
            await context.add_init_script(PAGE_BEHIND_NAT)
            await context.add_init_script(FRAME_LOG)
            page = await context.new_page()
            await page.goto(link)
            await page.get_by_role("button", name="Play").click()
            # The speaker the node has on air (a refused switch leaves the previous one).
            on_air = ((self.moderator.state or {}).get("on_air") or {}).get("speaker")
            self.on_air = on_air if on_air in SPEAKERS else self.on_air
            size = SPEAKERS[self.on_air][0]
            try:
                await page.wait_for_function(
                    """([w, h]) => { const s = window.dragomanFrames?.sizes ?? [];
                       const last = s[s.length - 1];
                       return last && last.width === w && last.height === h; }""",
                    arg=list(size),
                    timeout=options.join_timeout * 1000,
                )
            except PlaywrightTimeoutError:
                # Recorded and counted, not raised: the next phase may fare better.
                return {
                    "condition": condition,
                    "error": f"no {size[0]}x{size[1]} frame within {options.join_timeout:.0f} s"
                    f" (publishers: {[pc.connectionState for pc in self.publishers]}, on air:"
                    f" {(self.moderator.state or {}).get('on_air')}, refused:"
                    f" {self.moderator.refusals()})",
                }
            await asyncio.sleep(2)  # past the join: jitter buffers settle
            before = await page.evaluate(STATS)
            busy_before = machine_busy()
            cpu_before = time.process_time()
            ssrc = before["video"].get("ssrc")
            rtx = before["video"].get("rtxSsrc")
            down = relay.downstream.counters
            up = relay.upstream.counters
            dropped_before = (down.rtp_lost[ssrc], down.rtp_lost[rtx], down.rtp_received[ssrc])
            up_before = sum(up.rtp_lost[s] for s in self.publisher_video)
            switches = []
            gap = options.window / options.switches
            start = time.monotonic()
            others = list(SPEAKERS)
            for n in range(options.switches):
                await asyncio.sleep(max(0.0, start + gap * n + gap / 2 - time.monotonic()))
                following = others[(others.index(self.on_air) + 1) % len(others)]
                switches.append(await self.switch(page, following))
            await asyncio.sleep(max(0.0, start + options.window - time.monotonic()))
            after = await page.evaluate(STATS)
            busy_after = machine_busy()
            own_cpu = (time.process_time() - cpu_before) / options.window
            v0, v1 = before["video"], after["video"]
            a0, a1 = before["audio"], after["audio"]
            samples = delta(a1, a0, "totalSamplesReceived")
            received = delta(v1, v0, "packetsReceived")
            lost = delta(v1, v0, "packetsLost")
            retransmitted = delta(v1, v0, "retransmittedPacketsReceived")
            result: dict[str, Any] = {
                "condition": condition,
                "window_s": options.window,
                "video_packets_received": received,
                "video_packets_lost": lost,
                # Chromium counts a packet repaired by RTX as lost all the same (its
                # retransmission arrives on the RTX SSRC): what NACK did not repair is
                # estimated as lost minus retransmissions received (a retransmission of a
                # packet that arrived after all, or too late, makes it an underestimate).
                "video_unrepaired": max(0.0, lost - retransmitted),
                "video_unrepaired_share": max(0.0, lost - retransmitted) / (received + lost)
                if received + lost
                else None,
                "relay_dropped_to_attendee_video": down.rtp_lost[ssrc] - dropped_before[0],
                "relay_dropped_to_attendee_rtx": (down.rtp_lost[rtx] - dropped_before[1])
                if rtx
                else None,
                "relay_video_sent_to_attendee": down.rtp_received[ssrc] - dropped_before[2],
                "relay_dropped_from_publishers_video": sum(
                    up.rtp_lost[s] for s in self.publisher_video
                )
                - up_before,
                "video_nacks": delta(v1, v0, "nackCount"),
                "video_plis": delta(v1, v0, "pliCount"),
                "video_retransmitted_received": retransmitted,
                "frames_decoded": delta(v1, v0, "framesDecoded"),
                "key_frames_decoded": delta(v1, v0, "keyFramesDecoded"),
                "freeze_count": delta(v1, v0, "freezeCount"),
                "freezes_s": delta(v1, v0, "totalFreezesDuration"),
                "pause_count": delta(v1, v0, "pauseCount"),
                "audio_concealed": delta(a1, a0, "concealedSamples") / samples if samples else None,
                "switches": switches,
                # Cores busy (of os.cpu_count()) over the window, and this process's share
                # (node, relay and publishers): the baseline absorbs the same load.
                "machine_busy_cores": (busy_after[0] - busy_before[0])
                / (busy_after[1] - busy_before[1])
                * (os.cpu_count() or 1),
                "bench_process_cpu": own_cpu,
            }
            result.update(await self.outage(page))
            return result
        finally:
            await context.close()

    async def outage(self, page: Page) -> dict[str, Any]:
        relay, options = self.relay, self.options
        assert relay is not None
        relay.cut()
        await asyncio.sleep(options.outage - 0.5)
        stalled = (await page.evaluate(STATS))["audioPackets"]
        await asyncio.sleep(0.5)
        relay.restore()
        restored = time.time() * 1000
        restored_at = time.monotonic()
        audio_ms = None
        while time.monotonic() - restored_at < options.recovery_timeout:
            now = await page.evaluate(STATS)
            packets = now["audioPackets"]
            if any(p > (stalled[i] if i < len(stalled) else 0) for i, p in enumerate(packets)):
                audio_ms = (time.monotonic() - restored_at) * 1000
                break
            await asyncio.sleep(0.05)
        video_ms = None
        while time.monotonic() - restored_at < options.recovery_timeout:
            frames = await page.evaluate("window.dragomanFrames")
            after = [g["to"] for g in frames["gaps"] if g["to"] > restored]
            if after:
                video_ms = after[0] - restored
                break
            await asyncio.sleep(0.05)
        stats = await page.evaluate(STATS)
        return {
            "outage_s": options.outage,
            "recovery_timeout_s": options.recovery_timeout,
            "audio_recovery_ms": audio_ms,
            "video_recovery_ms": video_ms,
            "peer_connections_after_outage": len(stats["audioPackets"]),
        }

    async def run(self) -> dict[str, Any]:
        options = self.options
        first, last = free_udp_range(40, ("127.0.0.1", RELAY_HOST))
        self.relay = relay = await UdpRelay(range(first, last + 1), seed=options.seed).start()
        peers: list[RTCPeerConnection] = []
        clients: list[Client] = []
        results: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory(prefix="dragoman-network-") as tmp:
            port = free_port()
            settings = load_settings(
                host="127.0.0.1",
                port=port,
                data_dir=Path(tmp) / "data",
                **relayed_node_settings(relay),
            )
            app = create_app(settings)
            runner = make_runner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            signer = app[SIGNER_KEY]
            base = f"http://127.0.0.1:{port}"

            def token(role: Role, subject: str, **scope: str) -> str:
                return signer.issue(role, subject=subject, ttl=timedelta(hours=1), **scope)

            try:
                async with aiohttp.ClientSession() as http:

                    async def connect(role: Role, subject: str, **scope: str) -> Client:
                        client = Client(await http.ws_connect(f"{base}/ws"))
                        clients.append(client)
                        await client.send("auth", v=1, token=token(role, subject, **scope))
                        await client.next("welcome")
                        return client

                    self.moderator = await connect(Role.MODERATOR, "mod")
                    for speaker_id, ((width, height), hz) in SPEAKERS.items():
                        client = await connect(Role.SPEAKER, speaker_id, speaker=speaker_id)
                        pc, ssrcs = await publish(client, ToneTrack(hz), BarsTrack(width, height))
                        peers.append(pc)
                        self.publishers.append(pc)
                        self.publisher_video.extend(ssrcs[:1])
                    await self.wait_for_publishers()
                    await self.moderator.send("start_session", session_id="plenary")
                    await self.moderator.send("put_on_air", speaker_id=self.on_air)
                    async with async_playwright() as playwright:
                        browser = await launch(playwright)
                        try:
                            for n in range(options.runs):
                                for condition in CONDITIONS:
                                    link = f"{base}/watch?lang=en&token=" + token(
                                        Role.ATTENDEE, f"bench-{n}-{condition}"
                                    )
                                    result = await self.phase(browser, link, condition)
                                    result["run"] = n
                                    results.append(result)
                                    if not options.json:
                                        print_phase(result)
                        finally:
                            await browser.close()
            finally:
                for client in clients:
                    await client.close()
                for pc in peers:
                    await pc.close()
                await runner.cleanup()
                await relay.close()
        return summarise(results, options)

    async def wait_for_publishers(self) -> None:
        assert self.moderator is not None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            state = self.moderator.state or {}
            if set(SPEAKERS) <= set(state.get("publishers", {}).get("speakers", [])):
                return
            await asyncio.sleep(0.1)
        raise RuntimeError("the speakers' media never reached the node")


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(results: list[dict[str, Any]], options: argparse.Namespace) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for condition in CONDITIONS:
        failed = [r for r in results if r["condition"] == condition and "error" in r]
        rows = [r for r in results if r["condition"] == condition and "error" not in r]
        switches = [s for r in rows for s in r["switches"]]
        not_recovered = sum(r["audio_recovery_ms"] is None for r in rows)
        summary[condition] = {
            "runs": len(rows),
            "failed": [r["error"] for r in failed],
            "video_unrepaired_share_median": median([r["video_unrepaired_share"] for r in rows]),
            "video_unrepaired_total": sum(r["video_unrepaired"] for r in rows),
            "video_retransmitted_received_total": sum(
                r["video_retransmitted_received"] for r in rows
            ),
            "video_nacks_total": sum(r["video_nacks"] for r in rows),
            "video_plis_total": sum(r["video_plis"] for r in rows),
            "video_packets_lost_total": sum(r["video_packets_lost"] for r in rows),
            "video_packets_received_total": sum(r["video_packets_received"] for r in rows),
            "relay_dropped_to_attendee_video_total": sum(
                r["relay_dropped_to_attendee_video"] for r in rows
            ),
            "relay_dropped_from_publishers_video_total": sum(
                r["relay_dropped_from_publishers_video"] for r in rows
            ),
            "audio_concealed_median": median([r["audio_concealed"] for r in rows]),
            "freeze_count_total": sum(r["freeze_count"] for r in rows),
            "freezes_s_total": sum(r["freezes_s"] for r in rows),
            "pause_count_total": sum(r["pause_count"] for r in rows),
            "switch_presented_ms_median": median([s["presented_ms"] for s in switches]),
            "switch_presented_ms_max": max(
                (s["presented_ms"] for s in switches if s["presented_ms"] is not None),
                default=None,
            ),
            "switch_received_ms_median": median([s["received_ms"] for s in switches]),
            "switches": len(switches),
            "switches_not_seen": sum(s["presented_ms"] is None for s in switches),
            "audio_recovery_ms_median": median([r["audio_recovery_ms"] for r in rows]),
            "video_recovery_ms_median": median([r["video_recovery_ms"] for r in rows]),
            "not_recovered": not_recovered,
            "machine_busy_cores_median": median([r["machine_busy_cores"] for r in rows]),
            "bench_process_cpu_median": median([r["bench_process_cpu"] for r in rows]),
        }
    return {
        "options": {
            "runs": options.runs,
            "window_s": options.window,
            "switches": options.switches,
            "outage_s": options.outage,
            "recovery_timeout_s": options.recovery_timeout,
            "join_timeout_s": options.join_timeout,
            "seed": options.seed,
        },
        "impairment": BAD_WIFI.__dict__,
        "summary": summary,
        "phases": results,
    }


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def percent(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}%}"


def print_phase(r: dict[str, Any]) -> None:
    if "error" in r:
        print(f"run {r['run']} {r['condition']:8}: {r['error']}", flush=True)
        return
    switches = ", ".join(ms(s["presented_ms"]) for s in r["switches"])
    for switch in r["switches"]:
        if switch["presented_ms"] is None:
            print(f"  never shown: {switch}", flush=True)
    audio = (
        ms(r["audio_recovery_ms"])
        if r["audio_recovery_ms"] is not None
        else f"not recovered within {r['recovery_timeout_s']:.0f} s"
    )
    print(
        f"run {r['run']} {r['condition']:8}: video lost {r['video_packets_lost']:.0f} of"
        f" {r['video_packets_received'] + r['video_packets_lost']:.0f}"
        f" (relay dropped {r['relay_dropped_to_attendee_video']} to the attendee,"
        f" {r['relay_dropped_from_publishers_video']} from the publishers),"
        f" {r['video_retransmitted_received']:.0f} retransmissions received after"
        f" {r['video_nacks']:.0f} NACKs, {r['video_unrepaired']:.0f} not repaired,"
        f" {r['video_plis']:.0f} PLIs, {r['key_frames_decoded']:.0f} key frames decoded;"
        f" audio concealed {percent(r['audio_concealed'])};"
        f" freezes {r['freeze_count']:.0f} ({r['freezes_s']:.2f} s), pauses"
        f" {r['pause_count']:.0f}; switches {switches}; after the outage audio {audio},"
        f" video {ms(r['video_recovery_ms'])} ({r['peer_connections_after_outage']} peer"
        f" connection(s) made by the page); machine busy {r['machine_busy_cores']:.2f} cores",
        flush=True,
    )


def print_summary(result: dict[str, Any]) -> None:
    o = result["options"]
    s = result["summary"]
    print()
    print(
        f"{o['runs']} runs; each phase: {o['window_s']:.0f} s window with {o['switches']}"
        f" speaker switches, then a {o['outage_s']:.0f} s outage (both ways, publishers too)."
        " Loopback: the relay impairs nothing; impaired: 5 % loss, 10 ms + 0-30 ms jitter,"
        " 2 % reordered by 20 ms, 1 % duplicated, both ways."
    )
    rows = [
        (
            "phases measured (failed)",
            lambda c: f"{c['runs']}" + (f" ({len(c['failed'])})" if c["failed"] else ""),
        ),
        (
            "video packets lost (getStats, all runs)",
            lambda c: (
                f"{c['video_packets_lost_total']:.0f} of"
                f" {c['video_packets_received_total'] + c['video_packets_lost_total']:.0f}"
            ),
        ),
        (
            "  relay dropped: to the attendee's video",
            lambda c: f"{c['relay_dropped_to_attendee_video_total']}",
        ),
        (
            "  relay dropped: publishers' video",
            lambda c: f"{c['relay_dropped_from_publishers_video_total']}",
        ),
        (
            "  NACKs sent, retransmissions received",
            lambda c: (
                f"{c['video_nacks_total']:.0f}, {c['video_retransmitted_received_total']:.0f}"
            ),
        ),
        (
            "  not repaired (lost - retransmitted)",
            lambda c: (
                f"{c['video_unrepaired_total']:.0f},"
                f" {percent(c['video_unrepaired_share_median'], 2)} median"
            ),
        ),
        ("  PLIs sent by the attendee", lambda c: f"{c['video_plis_total']:.0f}"),
        ("audio concealed, median of runs", lambda c: percent(c["audio_concealed_median"])),
        (
            "video freezes (count, total)",
            lambda c: f"{c['freeze_count_total']:.0f}, {c['freezes_s_total']:.2f} s",
        ),
        ("video pauses", lambda c: f"{c['pause_count_total']:.0f}"),
        (
            "switch -> new speaker's frame presented",
            lambda c: (
                f"{ms(c['switch_presented_ms_median'])} median,"
                f" max {ms(c['switch_presented_ms_max'])} ({c['switches']} switches"
                + (f", {c['switches_not_seen']} never seen" if c["switches_not_seen"] else "")
                + ")"
            ),
        ),
        (
            "switch -> its last packet received",
            lambda c: f"{ms(c['switch_received_ms_median'])} median",
        ),
        (
            f"{o['outage_s']:.0f} s outage -> audio flows again",
            lambda c: (
                f"{ms(c['audio_recovery_ms_median'])} median"
                + (
                    f"; {c['not_recovered']} of {c['runs']} not recovered within"
                    f" {o['recovery_timeout_s']:.0f} s"
                    if c["not_recovered"]
                    else ""
                )
            ),
        ),
        (
            "  -> first video frame presented",
            lambda c: f"{ms(c['video_recovery_ms_median'])} median",
        ),
        (
            f"machine busy cores (of {os.cpu_count()}), median",
            lambda c: number(c["machine_busy_cores_median"]),
        ),
        (
            "  node + relay + publishers (this process)",
            lambda c: number(c["bench_process_cpu_median"]),
        ),
    ]
    print(f"{'':42} {'loopback':>24}   {'impaired':>24}")
    for label, cell in rows:
        print(f"{label:42} {cell(s['loopback']):>24}   {cell(s['impaired']):>24}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of both phases (default 3)")
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured per phase")
    parser.add_argument("--switches", type=int, default=4, help="speaker switches per phase")
    parser.add_argument("--outage", type=float, default=5.0, help="seconds the relay is cut")
    parser.add_argument(
        "--recovery-timeout", type=float, default=20.0, help="seconds to wait after the outage"
    )
    parser.add_argument(
        "--join-timeout", type=float, default=30.0, help="seconds for a page's first frames"
    )
    parser.add_argument("--seed", type=int, default=1, help="the relay's random generator")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    options = parser.parse_args()
    result = asyncio.run(Bench(options).run())
    if options.json:
        print(json.dumps(result))
    else:
        print_summary(result)


if __name__ == "__main__":
    main()
