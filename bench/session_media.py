"""What recordings and HLS cost the server, and how far behind the room HLS plays.

CPU (``--cpu``, the default part): the bench server (bench/sfu_server.py, `streamer.Sfu`
alone in its process) receives three Opus tones, one VP8 and one H.264 640x360 30 fps
picture from a publisher process; each feeds an output. Then, step by step, each step adding to the
previous ones, it reads the server's CPU (utime+stime of every thread, /proc) over a
window:

1. the outputs alone (baseline);
2. ten audio subscribers (listener process): the cost of one WebRTC listener, the unit;
3. the three audio outputs recorded, each four times (WebM, no decoding);
4. the program recorded (video + sound in one WebM);
5. the three audio outputs packaged as HLS (Opus decoded, AAC encoded, once each);
6. the VP8 video packaged as HLS too (VP8 decoded, H.264 encoded once);
7. the H.264 video packaged as HLS too (remuxed: nothing decoded nor encoded).

Each step's cost per output is its CPU increase over the previous step divided by the
outputs it added, printed in CPU-seconds per second and in audio listeners.

Delay (``--delay``): a node (the `dragoman serve` application) with an interpreter (aiortc,
a tone) on air, and two attendee pages in headless Chromium, one over WebRTC and one over
HLS (``DRAGOMAN_DELIVERY=hls`` on a second node sharing nothing else). The interpreter's
tone changes frequency `--switches` times; each page's WebAudio analysis says when it
hears the new one: glass-to-glass delay (from the publisher's samples to the attendee's
ears, capture excluded), HLS beside WebRTC. Two HLS pages: the watch page as it is
(hls.js in low-latency mode: parts, blocking reload) and the same page with hls.js told
to ignore parts (``lowLatencyMode: false``), as a player without LL-HLS plays.

    python -m bench.session_media                 # both parts
    python -m bench.session_media --cpu --window 20
    python -m bench.session_media --delay --switches 6
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.forwarding import call, free_port, log, proc_cpu
from bench.peers import listener_process, publisher_process

REPO = Path(__file__).resolve().parent.parent
AUDIO_OUTPUTS = ("out-a0", "out-a1", "out-a2")
VIDEO_OUTPUT = "program-video"
#: The same picture sent as H.264 by a publisher offering nothing else.
H264_OUTPUT = "program-video-h264"
AUDIO_LISTENERS = 10
#: A Russian speaker of the seed program: the interpreter works into French.
SPEAKER = "alexander-tokovinin"
RECORDING_COPIES = 4


def wait_ready(url: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            call(f"{url}/ready", timeout=2)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def server_cpu(pid: int, window: float) -> float:
    """Server CPU-seconds per wall-second over `window`."""
    u0, s0 = proc_cpu(pid)
    t0 = time.monotonic()
    time.sleep(window)
    u1, s1 = proc_cpu(pid)
    return (u1 + s1 - u0 - s0) / (time.monotonic() - t0)


def cpu_part(window: float, warmup: float) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.sfu_server", "--sfu", "dragoman", "--port", str(port)],
        cwd=REPO,
    )
    ctx = mp.get_context("spawn")
    pub_conn, pub_child = ctx.Pipe()
    lis_conn, lis_child = ctx.Pipe()
    publishers = ctx.Process(
        target=publisher_process,
        args=(
            pub_child,
            {
                "url": url,
                "publishers": [
                    *({"id": f"a{i}", "kind": "audio", "freq": 300 + 200 * i} for i in range(3)),
                    {"id": "v", "kind": "video", "freq": 0},
                    {"id": "h", "kind": "video", "freq": 0, "codec": "h264"},
                ],
            },
        ),
    )
    listeners = ctx.Process(
        target=listener_process, args=(lis_child, {"url": url, "kind": "audio", "name": "l"})
    )
    steps: list[dict[str, Any]] = []
    pictures: list[dict[str, int]] = []
    worker: dict[str, float] = {}  # HLS video worker thread, CPU-s per wall-second
    started: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="dragoman-bench-") as tmp:
        try:
            wait_ready(url)
            for name in AUDIO_OUTPUTS:
                call(f"{url}/output", {"name": name, "kind": "audio"})
            call(f"{url}/output", {"name": VIDEO_OUTPUT, "kind": "video"})
            call(f"{url}/output", {"name": H264_OUTPUT, "kind": "video"})
            publishers.start()
            log("publishers:", pub_conn.recv())
            for i, name in enumerate(AUDIO_OUTPUTS):
                call(f"{url}/point", {"output": name, "source": f"a{i}/audio"})
            call(f"{url}/point", {"output": VIDEO_OUTPUT, "source": "v/video"})
            call(f"{url}/point", {"output": H264_OUTPUT, "source": "h/video"})
            listeners.start()

            def measure(step: str, added: int, unit: str) -> None:
                time.sleep(warmup)
                cpu = server_cpu(server.pid, window)
                previous = steps[-1]["cpu"] if steps else cpu
                per = (cpu - previous) / added if added else 0.0
                steps.append({"step": step, "cpu": cpu, "added": added, "unit": unit, "per": per})
                log(f"{step:<44} server {cpu:.4f} CPU-s/s  per {unit}: {per:.4f}")

            measure("outputs only (baseline)", 0, "-")
            lis_conn.send({"cmd": "add", "n": AUDIO_LISTENERS, "full": 1, "slots": {"a": "out-a0"}})
            log("listeners:", lis_conn.recv())
            measure(f"+{AUDIO_LISTENERS} audio listeners (WebRTC)", AUDIO_LISTENERS, "listener")
            # A recording costs little: several per output, for a difference above the noise.
            files = [
                {"name": f"{name}-{copy}", "audio": name}
                for name in AUDIO_OUTPUTS
                for copy in range(RECORDING_COPIES)
            ]
            call(f"{url}/record", {"dir": tmp, "files": files})
            measure(f"+{len(files)} audio recordings", len(files), "recorded audio output")
            program = [{"name": "program", "audio": "out-a0", "video": VIDEO_OUTPUT}]
            call(f"{url}/record", {"dir": tmp, "files": program})
            measure("+program recorded (video + sound)", 1, "recorded program")
            log("hls audio:", call(f"{url}/hls", {"dir": f"{tmp}/hls-a", "audio": AUDIO_OUTPUTS}))
            measure("+3 audio outputs as HLS (AAC)", 3, "HLS audio output")
            hls_video = {"dir": f"{tmp}/hls-v", "video": VIDEO_OUTPUT, "audio": []}
            log("hls video:", call(f"{url}/hls", hls_video))
            started["VP8"] = time.monotonic()
            measure("+VP8 video as HLS (transcoded, 640x360 30 fps)", 1, "HLS video, VP8")
            hls_h264 = {"dir": f"{tmp}/hls-h", "video": H264_OUTPUT, "audio": []}
            log("hls h264:", call(f"{url}/hls", hls_h264))
            started["H.264"] = time.monotonic()
            measure("+H.264 video as HLS (remuxed, 640x360 30 fps)", 1, "HLS video, H.264")
            sizes = {p.name: p.stat().st_size for p in Path(tmp).glob("*.webm")}
            log("recorded files:", sizes)
            stopped = call(f"{url}/session-media/stop", {})
            ended = time.monotonic()
            log("stopped:", stopped)
            # The two video packagers, in the order started: VP8, then H.264.
            pictures = stopped.get("hls_pictures", [])[-2:]
            for codec, cpu in zip(("VP8", "H.264"), stopped["hls_worker_cpu_s"][-2:], strict=True):
                worker[codec] = round(cpu / (ended - started[codec]), 4)
        finally:
            for conn, process in ((lis_conn, listeners), (pub_conn, publishers)):
                if process.is_alive():
                    conn.send({"cmd": "stop"})
                    process.join(20)
            server.terminate()
            server.wait(20)
    listener = next(s["per"] for s in steps if s["unit"] == "listener")
    per = {s["unit"]: s["per"] for s in steps}
    transcode, remux = per.get("HLS video, VP8"), per.get("HLS video, H.264")
    return {
        "window_s": window,
        "hls_video_pictures": pictures,
        "hls_video_worker_cpu_s_per_s": worker,
        "remux_over_transcode": (
            round(remux / transcode, 3) if transcode and remux is not None else None
        ),
        "steps": steps,
        "per_output": {
            s["unit"]: {
                "cpu_s_per_s": round(s["per"], 5),
                "audio_listeners": round(s["per"] / listener, 1) if listener > 0 else None,
            }
            for s in steps
            if s["added"]
        },
    }


async def delay_part(switches: int) -> dict[str, Any]:
    # Imported here: the CPU part needs neither the node nor Playwright.
    from datetime import timedelta

    import aiohttp
    from aiohttp import web
    from aiortc import RTCSessionDescription
    from playwright.async_api import async_playwright

    from bench.peers import ToneTrack, new_peer
    from signaling.app import SIGNER_KEY, create_app, make_runner
    from signaling.settings import load_settings
    from signaling.tokens import Role

    freqs = (440.0, 660.0)
    # "hls" is the watch page as it is (hls.js in low-latency mode, parts and blocking
    # reload); "hls_classic" the same page and node with hls.js told to ignore parts, as
    # a player without LL-HLS plays: segments only, two behind the live edge.
    results: dict[str, list[float]] = {"webrtc": [], "hls": [], "hls_classic": []}
    async with aiohttp.ClientSession() as http:
        with tempfile.TemporaryDirectory(prefix="dragoman-bench-") as tmp:
            nodes = {}
            for delivery in ("webrtc", "hls"):
                port = free_port()
                settings = load_settings(
                    host="127.0.0.1",
                    port=port,
                    data_dir=Path(tmp) / delivery,
                    rtc_addresses=["127.0.0.1"],
                    delivery=delivery,
                )
                app = create_app(settings)
                runner = make_runner(app)
                await runner.setup()
                await web.TCPSite(runner, "127.0.0.1", port).start()
                nodes[delivery] = (app, runner, f"http://127.0.0.1:{port}")

            def link(delivery: str, page: str, role: Role, subject: str, **scope: str) -> str:
                app, _, url = nodes[delivery]
                token = app[SIGNER_KEY].issue(
                    role, subject=subject, ttl=timedelta(hours=1), **scope
                )
                return f"{url}/{page}?token={token}&lang=en"

            async def ws(delivery: str, role: Role, subject: str, **scope: str) -> Any:
                token = link(delivery, "watch", role, subject, **scope).split("token=")[1]
                sock = await http.ws_connect(f"{nodes[delivery][2]}/ws")
                await sock.send_json({"type": "auth", "v": 1, "token": token.split("&")[0]})
                return sock

            async def next_of(sock: Any, kind: str) -> dict[str, Any]:
                while True:
                    message = await sock.receive_json(timeout=20)
                    if message["type"] == kind:
                        return message

            async def next_of_any(sock: Any, kinds: tuple[str, ...]) -> dict[str, Any]:
                while True:
                    message = await sock.receive_json(timeout=20)
                    if message["type"] in kinds:
                        return message

            tones: list[ToneTrack] = []
            peers = []
            sockets = []
            interpreters = []
            for delivery in nodes:
                moderator = await ws(delivery, Role.MODERATOR, "mod")
                interpreter = await ws(delivery, Role.INTERPRETER, "anna", booth="ru-fr")
                sockets += [moderator, interpreter]
                interpreters.append(interpreter)
                speaker = await ws(delivery, Role.SPEAKER, SPEAKER, speaker=SPEAKER)
                sockets.append(speaker)
                tone = ToneTrack(freqs[0])
                tones.append(tone)
                for sock, track in ((speaker, ToneTrack(1000.0)), (interpreter, tone)):
                    pc = new_peer()
                    pc.addTransceiver(track, direction="sendonly")
                    await pc.setLocalDescription(await pc.createOffer())
                    await next_of(sock, "welcome")
                    await sock.send_json(
                        {"type": "offer", "purpose": "publish", "sdp": pc.localDescription.sdp}
                    )
                    answer = await next_of(sock, "answer")
                    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
                    peers.append(pc)
                await interpreter.send_json({"type": "mic", "on": True})
                await next_of(moderator, "welcome")
                await moderator.send_json({"type": "start_session", "session_id": "plenary"})
                for _ in range(50):  # his media reaches the node a moment after the answer
                    await moderator.send_json({"type": "put_on_air", "speaker_id": SPEAKER})
                    reply = await next_of_any(moderator, ("state", "error"))
                    if reply["type"] == "state" and (reply.get("on_air") or {}).get("speaker"):
                        break
                    await asyncio.sleep(0.2)

            async def drain(sock: Any) -> None:
                # Read on: aiohttp answers the node's heartbeat only while reading.
                async for _ in sock:
                    pass

            async def choose_french(page: Any) -> None:
                # The channels are in the player's language menu (the globe button).
                await page.get_by_role("button", name=re.compile(r"^Language\s")).click()
                menu = page.get_by_role("radiogroup", name="Language")
                await menu.get_by_role("radio", name="Français", exact=True).check()
                await page.locator("#language-menu").press("Escape")

            async def without_low_latency(route: Any) -> None:
                response = await route.fetch()
                text = await response.text()
                assert "lowLatencyMode: true" in text
                await route.fulfill(
                    response=response,
                    body=text.replace("lowLatencyMode: true", "lowLatencyMode: false"),
                )

            readers = [asyncio.ensure_future(drain(sock)) for sock in sockets]
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=shutil.which("chromium"),
                    args=[
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-background-networking",
                        "--allow-loopback-in-peer-connection",
                        "--disable-features=WebRtcHideLocalIpsWithMdns",
                        "--autoplay-policy=no-user-gesture-required",
                    ],
                )
                pages = {}
                for kind, delivery in (
                    ("webrtc", "webrtc"),
                    ("hls", "hls"),
                    ("hls_classic", "hls"),
                ):
                    page = await browser.new_page()
                    if kind == "hls_classic":
                        await page.route("**/console/hls_fallback.js", without_low_latency)
                    await page.goto(link(delivery, "watch", Role.ATTENDEE, f"att-{kind}"))
                    await choose_french(page)
                    if delivery == "hls":
                        await page.wait_for_function(
                            "() => window.dragomanDebug.delivery.status === 'playing'",
                            timeout=60_000,
                        )
                    await page.get_by_role("button", name="Play").click()
                    pages[kind] = page

                async def hears(page: Any, hz: float) -> bool:
                    reading = await page.evaluate("() => window.dragomanDebug.analyse('channel')")
                    return bool(
                        reading and reading["rms"] > 0.02 and abs(reading["frequency"] - hz) < 20
                    )

                # Starting browsers can stall this process past the node's failover delay:
                # whoever was taken off air for it goes back on before the measure.
                for interpreter in interpreters:
                    await interpreter.send_json({"type": "mic", "on": True})
                for delivery, page in pages.items():
                    deadline = time.monotonic() + 60
                    # Polling the page: hearing a tone has no event to await.
                    while not await hears(page, freqs[0]) and time.monotonic() < deadline:  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
                    log(delivery, "hears the first tone")
                for i in range(switches):
                    target = freqs[(i + 1) % 2]
                    await asyncio.sleep(3.0)
                    changed = time.monotonic()
                    for tone in tones:
                        tone.freq = target
                    pending = dict(pages)
                    deadline = changed + 60
                    while pending and time.monotonic() < deadline:
                        for delivery, page in list(pending.items()):
                            if await hears(page, target):
                                results[delivery].append(time.monotonic() - changed)
                                del pending[delivery]
                        await asyncio.sleep(0.02)
                    log(
                        f"switch {i + 1}: "
                        + ", ".join(f"{d} {results[d][-1]:.2f} s" for d in results if results[d])
                    )
                await browser.close()
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            for sock in sockets:
                await sock.close()
            for pc in peers:
                await pc.close()
            for _, runner, _ in nodes.values():
                await runner.cleanup()
    medians = {d: statistics.median(v) for d, v in results.items() if v}
    return {
        "switches": switches,
        "delay_s": {d: [round(x, 2) for x in v] for d, v in results.items()},
        "median_s": {d: round(m, 2) for d, m in medians.items()},
        "hls_over_webrtc": (
            round(medians["hls"] / medians["webrtc"], 1)
            if "hls" in medians and "webrtc" in medians
            else None
        ),
        "hls_classic_over_webrtc": (
            round(medians["hls_classic"] / medians["webrtc"], 1)
            if "hls_classic" in medians and "webrtc" in medians
            else None
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", action="store_true", help="only the CPU part")
    parser.add_argument("--delay", action="store_true", help="only the delay part")
    parser.add_argument("--window", type=float, default=15.0, help="seconds of each CPU reading")
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds before each reading")
    parser.add_argument("--switches", type=int, default=5, help="tone changes (delay part)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    both = not (args.cpu or args.delay)
    out: dict[str, Any] = {}
    if args.cpu or both:
        out["cpu"] = cpu_part(args.window, args.warmup)
    if args.delay or both:
        out["delay"] = asyncio.run(delay_part(args.switches))
    if args.json:
        print(json.dumps(out, indent=2))
        return
    if "cpu" in out:
        print("per output            CPU-s/s   in audio listeners")
        for unit, row in out["cpu"]["per_output"].items():
            print(f"{unit:<22}{row['cpu_s_per_s']:>8.5f}   {row['audio_listeners']}")
        print(
            "HLS video, H.264 remuxed / VP8 transcoded:",
            out["cpu"]["remux_over_transcode"],
            " pictures (VP8 packager, H.264 packager):",
            out["cpu"]["hls_video_pictures"],
        )
        print("HLS video worker thread, CPU-s/s:", out["cpu"]["hls_video_worker_cpu_s_per_s"])
    if "delay" in out:
        d = out["delay"]
        print(
            f"glass-to-glass, median of {d['switches']}: {d['median_s']}  (LL-HLS/WebRTC: "
            f"{d['hls_over_webrtc']}x, HLS without parts/WebRTC: {d['hls_classic_over_webrtc']}x)"
        )


if __name__ == "__main__":
    main()
