"""People of a live event as the fault tests see them: each holds one WebSocket to a
`dragoman serve` process and, for publishers and attendees, one aiortc peer, and
comes back after a fault the way a page does (reconnect with back-off, then publish
or subscribe again).

`Person.join(url)` authenticates and does what the role's page does once welcomed: a
speaker publishes a tone and a small video, an interpreter publishes a tone and opens
his microphone, an attendee picks a channel and subscribes. `Person.come_back(url)`
retries with the pages' back-off (0.5 s doubling, jittered, capped) until the node
answers, and returns the seconds it took.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription

from signaling.tokens import Role, TokenSigner
from tests.signaling.conftest import WsClient
from tests.signaling.media_peers import Subscription, peer_connection, publish
from tests.support.tones import PatternVideoTrack, ToneTrack

SPEAKER_HZ, INTERPRETER_HZ = 1000.0, 440.0
RUSSIAN_SPEAKER = "alexander-tokovinin"
BOOTH = "ru-fr"
#: The pages' back-off (signaling/static/console/connection.js): first wait and cap.
FIRST_RETRY_S, MAX_RETRY_S = 0.5, 4.0

#: Rewrites the media address a node announces in an SDP (to reach it by another way).
Rewrite = Callable[[str], str]


def announced_as(old: str, new: str) -> Rewrite:
    """An SDP rewrite: candidates announcing `old` announce `new` instead."""
    pattern = re.compile(rf"^(a=candidate:.* ){re.escape(old)}( \d+ typ .*)$", re.MULTILINE)
    return lambda sdp: pattern.sub(rf"\g<1>{new}\g<2>", sdp)


@dataclass
class Person:
    """Someone with a page open on the event."""

    role: Role
    subject: str
    secret: str
    scope: dict[str, Any] = field(default_factory=dict)
    #: The attendee's channel.
    channel: str = "fr"
    #: Applied to the SDP the node sends before this person's peer reads it.
    rewrite_answer: Rewrite | None = None
    #: Applied to this person's own SDP before the node reads it.
    rewrite_offer: Rewrite | None = None
    client: WsClient | None = None
    pc: RTCPeerConnection | None = None
    subscription: Subscription | None = None
    session: aiohttp.ClientSession | None = None

    def token(self) -> str:
        signer = TokenSigner(self.secret.encode())
        return signer.issue(self.role, subject=self.subject, ttl=timedelta(hours=1), **self.scope)

    @property
    def state(self) -> dict[str, Any]:
        assert self.client is not None and self.client.state is not None
        return self.client.state

    async def connect(self, url: str) -> None:
        """Open the socket and authenticate (the welcome and the first state read)."""
        if self.session is None:
            self.session = aiohttp.ClientSession()
        await self.close_socket()
        client = WsClient(await self.session.ws_connect(f"{url}/ws"))
        try:
            await client.send("auth", v=1, token=self.token())
            client.welcome = await client.next("welcome")
            await client.next("state")
        except BaseException:
            await client.close()
            raise
        self.client = client

    async def start_media(self) -> None:
        """What the role's page does once welcomed: publish, or choose and subscribe."""
        assert self.client is not None
        await self.close_media()
        if self.role is Role.SPEAKER:
            self.pc = await self._publish(ToneTrack(SPEAKER_HZ), PatternVideoTrack())
        elif self.role is Role.INTERPRETER:
            self.pc = await self._publish(ToneTrack(INTERPRETER_HZ))
            await self.client.send("mic", on=True)
        elif self.role is Role.ATTENDEE:
            await self.client.send("select_channel", language=self.channel)
            await self.client.state_where(lambda s: s["you"]["channel"] == self.channel)
            self.subscription = await self._subscribe()

    async def join(self, url: str) -> None:
        await self.connect(url)
        await self.start_media()

    async def come_back(self, url: str, *, within: float) -> float:
        """Reconnect as the page does after its socket closed; seconds until welcomed."""
        started = time.monotonic()
        delay = FIRST_RETRY_S
        while True:
            try:
                await self.connect(url)
                return time.monotonic() - started
            except (aiohttp.ClientError, ConnectionError, OSError, TimeoutError) as exc:
                if time.monotonic() - started > within:
                    raise AssertionError(
                        f"{self.subject} not back within {within} s: {exc!r}"
                    ) from exc
            await asyncio.sleep(delay * random.uniform(0.75, 1.25))
            delay = min(delay * 2, MAX_RETRY_S)

    async def _publish(self, *tracks: Any) -> RTCPeerConnection:
        assert self.client is not None
        if self.rewrite_answer is None and self.rewrite_offer is None:
            return await publish(self.client, *tracks)
        pc = peer_connection()
        for track in tracks:
            pc.addTransceiver(track, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await self.client.send(
            "offer", purpose="publish", sdp=self.rewrite_offer(sdp) if self.rewrite_offer else sdp
        )
        answer = await self.client.next("answer")
        sdp = answer["sdp"]
        if self.rewrite_answer is not None:
            sdp = self.rewrite_answer(sdp)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        return pc

    async def _subscribe(self) -> Subscription:
        assert self.client is not None
        if self.rewrite_answer is None:
            return await Subscription.open(self.client)
        # The node's offer, seen through the rewrite (a page behind another route).
        client = self.client
        original_next = client.next

        async def next_rewritten(type_: str, within: float = 10.0) -> dict[str, Any]:
            message = await original_next(type_, within)
            if type_ == "offer" and self.rewrite_answer is not None:
                message = {**message, "sdp": self.rewrite_answer(message["sdp"])}
            return message

        client.next = next_rewritten  # type: ignore[method-assign]
        try:
            return await Subscription.open(client)
        finally:
            client.next = original_next  # type: ignore[method-assign]

    async def hears(self, frequency: float, within: float = 15.0) -> None:
        assert self.subscription is not None
        await self.subscription.hears("channel", frequency, within=within)

    async def close_media(self) -> None:
        if self.subscription is not None:
            await self.subscription.close()
            self.subscription = None
        if self.pc is not None:
            await self.pc.close()
            self.pc = None

    async def close_socket(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None

    async def close(self) -> None:
        await self.close_media()
        await self.close_socket()
        if self.session is not None:
            await self.session.close()
            self.session = None


def staff(secret: str) -> tuple[Person, Person, Person]:
    """The moderator, the Russian speaker and the RU<>FR booth's interpreter."""
    return (
        Person(Role.MODERATOR, "mod", secret),
        Person(Role.SPEAKER, RUSSIAN_SPEAKER, secret, {"speaker": RUSSIAN_SPEAKER}),
        Person(Role.INTERPRETER, "anna", secret, {"booth": BOOTH}),
    )


async def on_air(moderator: Person, speaker: Person, interpreter: Person, url: str) -> None:
    """Everyone joined, the session started, the speaker and the interpreter on air."""
    for person in (moderator, speaker, interpreter):
        await person.join(url)
    assert moderator.client is not None
    await moderator.client.state_where(
        lambda s: (
            RUSSIAN_SPEAKER in s["publishers"]["speakers"]
            and s["publishers"]["interpreters"].get(BOOTH) == ["anna"]
        ),
        within=20,
    )
    await moderator.client.send("start_session", session_id="plenary")
    await moderator.client.send("put_on_air", speaker_id=RUSSIAN_SPEAKER)
    await moderator.client.state_where(
        lambda s: (
            s["session"] == "plenary"
            and (s.get("on_air") or {}).get("speaker") == RUSSIAN_SPEAKER
            and booth_of(s)["on_air"] == "anna"
        ),
        within=20,
    )


def booth_of(state: dict[str, Any], booth: str = BOOTH) -> dict[str, Any]:
    """The booth's part of a staff state."""
    return next(b for b in state["booths"] if b["id"] == booth)
