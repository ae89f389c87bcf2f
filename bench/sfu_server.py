"""The benchmark's server: a tiny HTTP signalling process around one SFU.

``--sfu dragoman`` wraps `streamer.Sfu` (RTP forwarding); ``--sfu relay`` is the baseline
every aiortc tutorial starts from: aiortc's `MediaRelay`, which decodes each published
track once and encodes it again for every subscriber. Both speak the same small API, so
the very same clients measure both, each server alone in its process:

- ``GET /ready``
- ``POST /publish {id, sdp}`` -> ``{sdp}``: the publisher offers, the server answers;
  its tracks become sources ``<id>/audio`` and ``<id>/video``.
- ``POST /output {name, kind}``, ``POST /point {output, source}``
- ``POST /subscribe {id, slots: {slot: output}}`` -> ``{sdp}``: the server offers;
  ``POST /answer {id, sdp}`` completes it.
- ``POST /point-slot {id, slot, output}`` (Dragoman only)
- ``GET /stats``

Session media, Dragoman only (bench/session_media.py): ``POST /record {dir, files: [{name,
audio, video}]}`` records outputs into WebM files, ``POST /hls {dir, video, audio: [...]}``
packages outputs as HLS, ``POST /session-media/stop`` ends both.

Measurement endpoints, Dragoman only (see bench/latency_probe.py):
``POST /probe/added {seconds}``, ``POST /probe/switch {...}``, ``POST /probe/profile
{seconds, top}`` (cProfile of this process, top functions by own time).

Run: ``python -m bench.sfu_server --sfu dragoman --port 18080``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import logging
import pstats
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bench.latency_probe import PacketClock
from bench.peers import LOOPBACK, new_peer


class BenchError(Exception):
    """A request the benchmark server cannot honour (answered with HTTP 400)."""


class Backend(Protocol):
    async def publish(self, publisher_id: str, sdp: str) -> str: ...
    def declare_output(self, name: str, kind: str) -> None: ...
    def point(self, output: str, source: str | None) -> None: ...
    async def subscribe(self, subscriber_id: str, slots: dict[str, str]) -> str: ...
    async def accept_answer(self, subscriber_id: str, sdp: str) -> None: ...
    def point_slot(self, subscriber_id: str, slot: str, output: str) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    async def close(self) -> None: ...


class DragomanBackend:
    """`streamer.Sfu` as it is."""

    def __init__(self) -> None:
        from streamer.sfu import Sfu, SfuConfig

        self.sfu = Sfu(SfuConfig(ice_servers=[], host_addresses=LOOPBACK))

    async def publish(self, publisher_id: str, sdp: str) -> str:
        return await self.sfu.publish(publisher_id, sdp)

    def declare_output(self, name: str, kind: str) -> None:
        self.sfu.declare_output(name, kind)

    def point(self, output: str, source: str | None) -> None:
        self.sfu.point(output, source)

    async def subscribe(self, subscriber_id: str, slots: dict[str, str]) -> str:
        return await self.sfu.subscribe(subscriber_id, slots)

    async def accept_answer(self, subscriber_id: str, sdp: str) -> None:
        await self.sfu.accept_answer(subscriber_id, sdp)

    def point_slot(self, subscriber_id: str, slot: str, output: str) -> None:
        self.sfu.point_slot(subscriber_id, slot, output)

    def stats(self) -> dict[str, Any]:
        return self.sfu.stats()

    async def close(self) -> None:
        await self.sfu.close()


class RelayBackend:
    """aiortc's `MediaRelay`: decode once, re-encode per subscriber."""

    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.publishers: dict[str, RTCPeerConnection] = {}
        self.subscribers: dict[str, RTCPeerConnection] = {}
        self.tracks: dict[str, MediaStreamTrack] = {}
        self.outputs: dict[str, str | None] = {}
        self.drains: list[asyncio.Task[None]] = []

    async def publish(self, publisher_id: str, sdp: str) -> str:
        pc = new_peer()
        self.publishers[publisher_id] = pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.tracks[f"{publisher_id}/{track.kind}"] = track
            # Read the track even with no subscriber, as a server that plays it would.
            self.drains.append(asyncio.ensure_future(self._drain(self.relay.subscribe(track))))

        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    @staticmethod
    async def _drain(track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
        except MediaStreamError:
            return

    def declare_output(self, name: str, kind: str) -> None:
        self.outputs[name] = None

    def point(self, output: str, source: str | None) -> None:
        if output not in self.outputs:
            raise BenchError(f"unknown output {output!r}")
        self.outputs[output] = source

    async def subscribe(self, subscriber_id: str, slots: dict[str, str]) -> str:
        pc = new_peer()
        self.subscribers[subscriber_id] = pc
        for output in slots.values():
            source = self.outputs.get(output)
            if source not in self.tracks:
                raise BenchError(f"output {output!r} has no published source to relay")
            pc.addTrack(self.relay.subscribe(self.tracks[source]))
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp

    async def accept_answer(self, subscriber_id: str, sdp: str) -> None:
        await self.subscribers[subscriber_id].setRemoteDescription(
            RTCSessionDescription(sdp, "answer")
        )

    def point_slot(self, subscriber_id: str, slot: str, output: str) -> None:
        raise BenchError("the MediaRelay baseline does not re-point subscriber slots")

    def stats(self) -> dict[str, Any]:
        return {"publishers": len(self.publishers), "subscribers": len(self.subscribers)}

    async def close(self) -> None:
        for task in self.drains:
            task.cancel()
        peers = [*self.publishers.values(), *self.subscribers.values()]
        await asyncio.gather(*(pc.close() for pc in peers), return_exceptions=True)


def offered_ssrcs(sdp: str) -> dict[str, set[int]]:
    """SSRCs per media kind announced in an SDP offer (a=ssrc lines of each m= section)."""
    found: dict[str, set[int]] = {}
    kind = ""
    for line in sdp.splitlines():
        if line.startswith("m="):
            kind = line[2:].split(" ", 1)[0]
        elif m := re.match(r"a=ssrc:(\d+) ", line):
            found.setdefault(kind, set()).add(int(m.group(1)))
    return found


class BenchServer:
    """The HTTP face of one backend, plus what the probes need to know about routing."""

    def __init__(self, backend: Backend, probes: bool) -> None:
        self.backend = backend
        self.source_ssrcs: dict[str, set[int]] = {}
        self.outputs: dict[str, str | None] = {}
        self.slots: dict[str, dict[str, str]] = {}
        self.clock: PacketClock | None = None
        self.session_media: list[Any] = []  # recordings and HLS packagers, closed on stop
        if probes:
            from streamer.aiortc_internals import SenderLink

            self.clock = PacketClock(send_points=[(SenderLink, "send")])

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20)
        routes: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "/publish": self.publish,
            "/output": self.declare_output,
            "/point": self.point,
            "/subscribe": self.subscribe,
            "/answer": self.answer,
            "/point-slot": self.point_slot,
            "/probe/added": self.probe_added,
            "/probe/switch": self.probe_switch,
            "/probe/profile": self.probe_profile,
            "/record": self.record,
            "/hls": self.hls,
            "/session-media/stop": self.stop_session_media,
        }
        for path, handler in routes.items():
            app.router.add_post(path, self._json(handler))
        app.router.add_get("/ready", lambda _: self._reply({"ready": True}))
        app.router.add_get("/stats", lambda _: self._reply(self.backend.stats()))
        app.on_cleanup.append(lambda _: self.backend.close())
        return app

    @staticmethod
    async def _reply(body: dict[str, Any], status: int = 200) -> web.Response:
        return web.json_response(body, status=status, dumps=lambda o: _dumps(o))

    def _json(
        self, handler: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def serve(request: web.Request) -> web.Response:
            try:
                body = await request.json()
                return await self._reply(await handler(body))
            except Exception as exc:  # the bench client prints it; the server keeps running
                return await self._reply({"error": f"{type(exc).__name__}: {exc}"}, 400)

        return serve

    async def publish(self, body: dict[str, Any]) -> dict[str, Any]:
        for kind, ssrcs in offered_ssrcs(body["sdp"]).items():
            self.source_ssrcs[f"{body['id']}/{kind}"] = ssrcs
        return {"sdp": await self.backend.publish(body["id"], body["sdp"])}

    async def declare_output(self, body: dict[str, Any]) -> dict[str, Any]:
        self.backend.declare_output(body["name"], body["kind"])
        self.outputs[body["name"]] = None
        return {}

    async def point(self, body: dict[str, Any]) -> dict[str, Any]:
        self.backend.point(body["output"], body["source"])
        self.outputs[body["output"]] = body["source"]
        return {}

    async def subscribe(self, body: dict[str, Any]) -> dict[str, Any]:
        sdp = await self.backend.subscribe(body["id"], body["slots"])
        self.slots[body["id"]] = dict(body["slots"])
        return {"sdp": sdp}

    async def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        await self.backend.accept_answer(body["id"], body["sdp"])
        return {}

    async def point_slot(self, body: dict[str, Any]) -> dict[str, Any]:
        self.backend.point_slot(body["id"], body["slot"], body["output"])
        self.slots[body["id"]][body["slot"]] = body["output"]
        return {}

    def _sfu(self) -> Any:
        sfu = getattr(self.backend, "sfu", None)
        if sfu is None:
            raise BenchError("recordings and HLS are only available with --sfu dragoman")
        return sfu

    async def record(self, body: dict[str, Any]) -> dict[str, Any]:
        from pathlib import Path

        sfu = self._sfu()
        for spec in body["files"]:
            path = Path(body["dir"]) / f"{spec['name']}.webm"
            self.session_media.append(sfu.record(path, spec["audio"], spec.get("video")))
        return {}

    async def hls(self, body: dict[str, Any]) -> dict[str, Any]:
        video = body.get("video")
        packager = self._sfu().package_hls(
            body["dir"],
            ("program", video) if video else None,
            [(name, name) for name in body["audio"]],
        )
        self.session_media.append(packager)
        for _ in range(200):
            if packager.ready():
                break
            await asyncio.sleep(0.1)
        return {
            "ready": packager.ready(),
            "problem": packager.problem,
            "video_frames_remuxed": packager.video_frames_remuxed,
            "video_frames_encoded": packager.video_frames_encoded,
        }

    async def stop_session_media(self, body: dict[str, Any]) -> dict[str, Any]:
        items, self.session_media = self.session_media, []
        cpu = [round(item.cpu_s, 2) for item in items if hasattr(item, "cpu_s")]
        pictures = [
            {"remuxed": item.video_frames_remuxed, "encoded": item.video_frames_encoded}
            for item in items
            if hasattr(item, "video_frames_remuxed")
        ]
        for item in items:
            item.close()
        return {"hls_worker_cpu_s": cpu, "hls_pictures": pictures}

    def _probe_clock(self) -> PacketClock:
        if self.clock is None:
            raise BenchError("probes are only available with --sfu dragoman")
        return self.clock

    async def probe_added(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._probe_clock().added(float(body.get("seconds", 3)))

    async def probe_switch(self, body: dict[str, Any]) -> dict[str, Any]:
        """Re-point an output between two sources, or one subscriber's slot between two
        outputs, `count` times; time until the new source's packets leave."""
        clock = self._probe_clock()
        count = int(body.get("count", 40))
        if body.get("mode", "output") == "output":
            output, sources = body["output"], body["sources"]

            def flip(i: int) -> tuple[set[int], int]:
                source = sources[(i + 1) % 2]
                self.backend.point(output, source)
                self.outputs[output] = source
                listeners = sum(output in s.values() for s in self.slots.values())
                return self.source_ssrcs[source], listeners

            try:
                return await clock.switches(count, flip)
            finally:
                self.backend.point(output, sources[0])
                self.outputs[output] = sources[0]
        subscriber, slot, outputs = body["id"], body["slot"], body["outputs"]

        def flip_slot(i: int) -> tuple[set[int], int]:
            output = outputs[(i + 1) % 2]
            self.backend.point_slot(subscriber, slot, output)
            self.slots[subscriber][slot] = output
            return self.source_ssrcs[self.outputs[output] or ""], 1

        try:
            return await clock.switches(count, flip_slot)
        finally:
            self.backend.point_slot(subscriber, slot, outputs[0])
            self.slots[subscriber][slot] = outputs[0]

    async def probe_profile(self, body: dict[str, Any]) -> dict[str, Any]:
        profile = cProfile.Profile()
        profile.enable()
        try:
            await asyncio.sleep(float(body.get("seconds", 10)))
        finally:
            profile.disable()
        text = io.StringIO()
        stats = pstats.Stats(profile, stream=text).sort_stats("tottime")
        stats.print_stats(int(body.get("top", 30)))
        return {"profile": text.getvalue()}


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(obj, default=str)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sfu", choices=["dragoman", "relay"], default="dragoman")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    async def build() -> web.Application:
        # Built inside the running loop: the SFU may start tasks as it is made.
        backend: Backend = DragomanBackend() if args.sfu == "dragoman" else RelayBackend()
        return BenchServer(backend, probes=args.sfu == "dragoman").app()

    web.run_app(build(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
