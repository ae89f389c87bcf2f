"""One page per speaker and per interpreter on all the nodes of an event: a link open on
node A is not silently taken over by a page of the same link on node B (docs/protocol.md,
"One page per seat"). Real nodes sharing a real redis-server, or the embedded hub of
``--workers``; protocol-level clients, and a real aiortc publisher."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from signaling.live.clients import CLOSE_SEAT
from signaling.live.outputs import speaker_publisher
from signaling.tokens import Role
from signaling.websocket import LIVE_KEY
from tests.signaling.conftest import WsClient, token
from tests.signaling.media_peers import RUSSIAN_SPEAKER, ToneTrack, publish
from tests.signaling.test_seats import (
    QUICK_SEAT_CHECK_S,
    answer_check,
    arriving,
    closed_with,
    holding,
    speaker_link,
)

#: Generous on a loaded machine: the bus itself takes milliseconds.
FOLLOW_S = 5.0


async def _signed_in(open_ws: Any, node: Any, role: Role, subject: str, **scope: Any) -> WsClient:
    client = await open_ws(node)
    await client.send("auth", v=1, token=token(node, role, subject, **scope))
    client.welcome = await client.next("welcome")
    await client.next("state")
    return client


def _speaker_sources(node: Any) -> set[str]:
    prefix = speaker_publisher(RUSSIAN_SPEAKER)
    return {s for s in node.app[LIVE_KEY].sources if s.startswith(prefix)}


async def _eventually(check: Any, within: float = FOLLOW_S) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.05)


async def test_a_link_open_on_one_node_is_refused_on_another_until_its_holder_or_a_studio_agrees(
    start_node, open_ws, peers
) -> None:
    a, b = await start_node(), await start_node()
    studios = [
        await _signed_in(open_ws, a, Role.MODERATOR, "marie"),
        await _signed_in(open_ws, b, Role.MODERATOR, "paul"),
    ]
    link = speaker_link(a)
    holder = await holding(open_ws, a, link)
    peers.append(await publish(holder, ToneTrack(1000.0)))
    await _eventually(lambda: bool(_speaker_sources(a)))

    # Opened on B: the page on A is asked whether it is there, and it is.
    second = await arriving(open_ws, b, link)
    await answer_check(holder)
    await closed_with(second, "seat_taken")

    # Asked from B: the holder on A and the studios on both nodes hear it; the holder keeps it.
    asking = await arriving(open_ws, b, link, claim=True)
    await answer_check(holder)
    asked = await holder.next("seat_claim")
    assert asked["pending"] is True and asked["wait_s"] > 0
    assert (await asking.next("seat_waiting"))["claim"] == asked["claim"]
    for studio in studios:
        listed = await studio.next("seat_claims")
        assert [(c["claim"], c["role"], c["speaker"]) for c in listed["claims"]] == [
            (asked["claim"], "speaker", RUSSIAN_SPEAKER)
        ]
    other = await _signed_in(open_ws, a, Role.SPEAKER, "elena-naumova", speaker="elena-naumova")
    ref = await other.send("answer_claim", claim=asked["claim"], allow=True)
    assert (await other.error(ref))["code"] == "forbidden"
    await holder.send("answer_claim", claim=asked["claim"], allow=False)
    await closed_with(asking, "claim_refused")
    assert (await holder.next("seat_claim"))["pending"] is False
    for studio in studios:
        assert (await studio.next("seat_claims"))["claims"] == []
    await holder.alive()

    # Asked again: the studio on A lets it in. A's page is displaced, B's publishes.
    taking = await arriving(open_ws, b, link, claim=True)
    await answer_check(holder)
    asked = await holder.next("seat_claim")
    await studios[0].next("seat_claims")
    await studios[0].send("answer_claim", claim=asked["claim"], allow=True)
    taking.welcome = await taking.next("welcome")
    assert taking.welcome["node"] == b.app[LIVE_KEY].node
    await closed_with(holder, "displaced")
    peers.append(await publish(taking, ToneTrack(1000.0)))
    # The speaker's media now comes from B alone: A let the displaced page's go at once.
    await _eventually(lambda: bool(_speaker_sources(b)) and not _speaker_sources(a))
    await studios[0].state_where(
        lambda s: RUSSIAN_SPEAKER in s["publishers"]["speakers"], within=FOLLOW_S
    )
    await taking.alive()

    # Asked from A while the page on B leaves: the seat is the newcomer's.
    back = await arriving(open_ws, a, link, claim=True)
    await answer_check(taking)
    await taking.next("seat_claim")
    await back.next("seat_waiting")
    await taking.close()
    back.welcome = await back.next("welcome")
    assert back.welcome["node"] == a.app[LIVE_KEY].node
    await back.alive()


class Page:
    """A page opening a link as the product's pages do: it answers ``seat_check`` at once,
    unless its network dropped (``silent``)."""

    def __init__(self, client: WsClient) -> None:
        self.client = client
        self.silent = False
        #: "welcome", or the code of the error it was closed with.
        self.outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.errors: list[str] = []
        self.closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.pongs: asyncio.Queue[int] = asyncio.Queue()
        self._reading = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, open_ws: Any, node: Any, link: str) -> Page:
        page = cls(await open_ws(node))
        await page.client.send("auth", v=1, token=link)
        return page

    async def _read(self) -> None:
        while True:
            frame = await self.client.ws.receive()
            if frame.type != aiohttp.WSMsgType.TEXT:
                code = frame.data if frame.type == aiohttp.WSMsgType.CLOSE else -1
                if not self.outcome.done():
                    self.outcome.set_result(self.errors[-1] if self.errors else "closed")
                self.closed.set_result(code)
                return
            message = json.loads(frame.data)
            if message["type"] == "welcome" and not self.outcome.done():
                self.client.welcome = message
                self.outcome.set_result("welcome")
            elif message["type"] == "pong":
                self.pongs.put_nowait(message["ref"])
            elif message["type"] == "error":
                self.errors.append(message["code"])
            elif message["type"] == "seat_check" and not self.silent:
                await self.client.send("seat_here", check=message["check"])

    async def alive(self) -> None:
        ref = await self.client.send("ping")
        assert await asyncio.wait_for(self.pongs.get(), FOLLOW_S) == ref

    async def close(self) -> None:
        self._reading.cancel()
        await asyncio.gather(self._reading, return_exceptions=True)
        await self.client.close()


async def _outcomes(pages: list[Page], within: float) -> list[str]:
    async with asyncio.timeout(within):
        return [await page.outcome for page in pages]


async def test_of_two_pages_at_once_on_two_nodes_one_sits_and_a_silent_one_loses_its_seat(
    start_node, open_ws, peers
) -> None:
    a, b = await start_node(), await start_node()
    link = token(a, Role.INTERPRETER, "anna", booth="ru-fr")

    # A free seat, asked on both nodes at once: the log's order lets one in.
    first = await asyncio.gather(*(Page.open(open_ws, node, link) for node in (a, b)))
    peers.extend(first)
    assert sorted(await _outcomes(first, FOLLOW_S * 2)) == ["seat_taken", "welcome"]
    holder = next(page for page in first if page.outcome.result() == "welcome")
    assert holder.closed.done() is False

    # Its network drops (it answers nothing): two pages at once on both nodes, one of
    # them on the holder's node. After the holder's time to answer, exactly one sits.
    holder.silent = True
    for node in (a, b):
        node.app[LIVE_KEY].seats.check_s = QUICK_SEAT_CHECK_S
    started = time.monotonic()
    second = await asyncio.gather(*(Page.open(open_ws, node, link) for node in (a, b)))
    peers.extend(second)
    assert sorted(await _outcomes(second, FOLLOW_S * 3)) == ["seat_taken", "welcome"]
    # The holder was given its seat check's time.
    assert time.monotonic() - started >= QUICK_SEAT_CHECK_S - 0.5
    assert await asyncio.wait_for(holder.closed, FOLLOW_S) == CLOSE_SEAT
    assert holder.errors == ["displaced"]

    winner = next(page for page in second if page.outcome.result() == "welcome")
    await winner.alive()
    # Every node has one table, and it names the winner's node.
    tables = [node.app[LIVE_KEY].replica.seats for node in (a, b)]
    assert tables[0] == tables[1] and len(tables[0]) == 1
    (held,) = tables[0].values()
    assert held["node"] == winner.client.welcome["node"]
