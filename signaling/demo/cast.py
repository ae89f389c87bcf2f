"""The demo's simulated people: real clients of the live protocol, as pages are.

A `Participant` opens the WebSocket a page opens, authenticates with a signed link's
token, keeps the latest `state` it is sent, sends commands, and publishes media over
WebRTC (aiortc) the way the speaker's and the booth's pages do: it offers, the node
answers. Nothing here reaches into the node: what the demo shows is what the product
does with clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any

import aiohttp
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from streamer.aiortc_internals import restrict_ice

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
ANSWER_TIMEOUT_S = 15.0


class CastError(Exception):
    """A simulated participant was refused by the node (the message says why)."""


class Participant:
    """One simulated person connected to the node: a WebSocket, maybe a publication."""

    def __init__(self, who: str, url: str, token: str, media_addresses: Sequence[str]) -> None:
        self.who = who
        self._url = url.rstrip("/")
        self._token = token
        self._media_addresses = tuple(media_addresses)
        self.state: dict[str, Any] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._changed = asyncio.Event()
        self._pc: RTCPeerConnection | None = None
        self._counter = 0

    async def connect(self) -> None:
        self._session = aiohttp.ClientSession()
        ws_url = "ws" + self._url.removeprefix("http") + "/ws"
        self._ws = await self._session.ws_connect(ws_url, heartbeat=20.0)
        await self._ws.send_str(
            json.dumps({"type": "auth", "v": PROTOCOL_VERSION, "token": self._token})
        )
        first = await self._ws.receive_json(timeout=ANSWER_TIMEOUT_S)
        if first.get("type") != "welcome":
            raise CastError(f"{self.who} was not admitted: {first.get('message', first)}")
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self._ws is not None
        async for frame in self._ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(frame.data)
            kind = message.get("type")
            if kind == "state":
                self.state = message
                self._changed.set()
            elif kind == "answer":
                await self._answers.put(message)
            elif kind == "error":
                # A demo command refused is worth a line, not a stop: the next one goes on.
                log.warning("%s: %s (%s)", self.who, message.get("message"), message.get("code"))

    async def send(self, type_: str, **fields: Any) -> None:
        if self._ws is None or self._ws.closed:
            raise CastError(f"{self.who} is not connected")
        self._counter += 1
        await self._ws.send_str(json.dumps({"type": type_, "id": self._counter, **fields}))

    async def wait_state(self, check: Any, within: float = ANSWER_TIMEOUT_S) -> dict[str, Any]:
        """The first state (the current one included) for which `check(state)` is true."""
        async with asyncio.timeout(within):
            while self.state is None or not check(self.state):
                self._changed.clear()
                await self._changed.wait()
        assert self.state is not None
        return self.state

    async def publish(self, *tracks: MediaStreamTrack) -> None:
        """Publish tracks as a page does: offer over the WebSocket, apply the answer."""
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        restrict_ice(pc, self._media_addresses)
        for track in tracks:
            pc.addTransceiver(track, direction="sendonly")
        self._pc = pc
        await pc.setLocalDescription(await pc.createOffer())
        await self.send("offer", purpose="publish", sdp=pc.localDescription.sdp)
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            answer = await self._answers.get()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    async def close(self) -> None:
        if self._pc is not None:
            await self._pc.close()
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._session is not None:
            await self._session.close()
