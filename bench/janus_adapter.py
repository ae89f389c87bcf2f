"""Dragoman in the Janus harness: the same aiortc publisher and subscribers measure both.

The harness (``sfu_bench.py`` in the Janus anchor folder, which lives beside this
repository at ``../shared/anchors/janus/``; set ``DRAGOMAN_JANUS_ANCHOR`` to use another
copy) keeps everything SFU-specific in one `Signalling` class looked up by name in its
``SIGNALLING`` table, and only parses its command line under ``if __name__ ==
"__main__"``. So this module imports the harness, registers `DragomanSignalling` (at import
time, so the harness's spawned subscriber processes, which re-import this module, see it
too) and runs the harness with the same options:

    python -m bench.janus_adapter --signalling dragoman --kind audio --n 50
    python -m bench.janus_adapter --signalling janus --kind audio --n 50   # Janus itself

With ``--signalling dragoman`` the server is bench/sfu_server.py wrapping `streamer.Sfu`,
started by the harness per run like Janus, and measured the same way (/proc/PID/stat).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription

REPO = Path(__file__).resolve().parent.parent
ANCHOR = Path(os.environ.get("DRAGOMAN_JANUS_ANCHOR") or REPO.parent / "shared/anchors/janus")
if not (ANCHOR / "sfu_bench.py").is_file():
    raise SystemExit(
        f"the Janus harness is not at {ANCHOR} (expected beside the repository); "
        "set DRAGOMAN_JANUS_ANCHOR to the folder holding sfu_bench.py"
    )
sys.path.insert(0, str(ANCHOR))
import sfu_bench  # noqa: E402  (the harness; also patches aioice to loopback-only candidates)

from bench.peers import hold_bitrate  # noqa: E402

DEFAULT_PORT = 18080


def server_command(port: int) -> str:
    """How the harness starts Dragoman's bench server (it formats {d} and {tag} itself)."""
    return (
        f"env PYTHONPATH={shlex.quote(str(REPO))} {shlex.quote(sys.executable)} "
        f"-m bench.sfu_server --sfu dragoman --port {port}"
    )


class DragomanSignalling(sfu_bench.Signalling):
    """Drives bench/sfu_server.py: the publisher offers; for subscribers the server offers."""

    def __init__(
        self, url: str = f"http://127.0.0.1:{DEFAULT_PORT}", hold_bitrate: bool = True
    ) -> None:
        self.url = url
        self.hold_bitrate = hold_bitrate

    async def open(self) -> None:
        self.http = aiohttp.ClientSession()

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(self.url + path, json=body) as r:
            data = await r.json()
            if r.status != 200:
                raise RuntimeError(f"dragoman bench server {path}: {data.get('error', data)}")
            return data

    async def publish(self, pc: RTCPeerConnection) -> str:
        kind = pc.getTransceivers()[0].kind
        if self.hold_bitrate and kind == "video":
            # Janus in the anchor's configuration sends no REMB (bitrate = 0), so its publisher
            # stays at aiortc's 500 kbps; Dragoman relays its bandwidth estimate, which drops
            # when the machine is loaded. Hold the bitrate so both forward the same stream.
            hold_bitrate(pc.getTransceivers()[0].sender)
        output = f"program-{kind}"
        await self._post("/output", {"name": output, "kind": kind})
        await pc.setLocalDescription(await pc.createOffer())
        answer = await self._post("/publish", {"id": "bench-pub", "sdp": pc.localDescription.sdp})
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        await self._post("/point", {"output": output, "source": f"bench-pub/{kind}"})
        return output

    async def subscribe(self, pc: RTCPeerConnection, source: str, kind: str) -> None:
        subscriber = uuid.uuid4().hex[:12]
        offer = await self._post("/subscribe", {"id": subscriber, "slots": {kind: source}})
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await self._post("/answer", {"id": subscriber, "sdp": pc.localDescription.sdp})

    async def close(self) -> None:
        await self.http.close()


sfu_bench.SIGNALLING["dragoman"] = DragomanSignalling
sfu_bench.DEFAULT_SERVER["dragoman"] = (
    server_command(DEFAULT_PORT),
    f"http://127.0.0.1:{DEFAULT_PORT}/ready",
    {},
)


def main() -> None:
    # The harness's own options (its parser is not importable), plus --dragoman-port.
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kind", choices=["audio", "video"], default="audio")
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--warmup", type=float, default=4)
    ap.add_argument("--window", type=float, default=10)
    ap.add_argument("--workers", type=int, default=0, help="subscriber processes (0 = auto)")
    ap.add_argument("--full", type=int, default=None, help="decoding subscribers")
    ap.add_argument("--signalling", choices=sorted(sfu_bench.SIGNALLING), default="dragoman")
    ap.add_argument("--server-cmd", default=None, help="SFU command ({d}=work dir, {tag}=run tag)")
    ap.add_argument("--ready-url", default=None)
    ap.add_argument("--label", default="")
    ap.add_argument("--out", default=None)
    ap.add_argument("--dragoman-port", type=int, default=DEFAULT_PORT)
    ap.add_argument(
        "--adaptive-bitrate",
        action="store_true",
        help="let the video publisher follow Dragoman's REMB (default: held at 500 kbps)",
    )
    args = ap.parse_args()
    url = f"http://127.0.0.1:{args.dragoman_port}"
    sfu_bench.DEFAULT_SERVER["dragoman"] = (
        server_command(args.dragoman_port),
        url + "/ready",
        {"url": url, "hold_bitrate": not args.adaptive_bitrate},
    )
    asyncio.run(sfu_bench.run(args))


if __name__ == "__main__":
    main()
