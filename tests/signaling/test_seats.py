"""One page per speaker and per interpreter: a second page opened with the same link never
silently replaces the first (docs/protocol.md, "One page per seat")."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from signaling.live.clients import CLOSE_SEAT
from signaling.live.replica import Change
from signaling.tokens import Role
from signaling.websocket import LIVE_KEY
from tests.support.server import RunningServer

from .conftest import WsClient, token
from .media_peers import RUSSIAN_SPEAKER, ToneTrack, publish

#: The seat check of the tests whose holder never answers: half the node's 3 s
#: (SEAT_CHECK_S), which they wait out; the time it is given is what they check.
QUICK_SEAT_CHECK_S = 1.5


async def arriving(open_ws, server: RunningServer, link: str, *, claim: bool = False) -> WsClient:
    """A second page opening the link (not yet welcomed)."""
    client = await open_ws(server)
    fields: dict[str, Any] = {"claim": True} if claim else {}
    await client.send("auth", v=1, token=link, **fields)
    return client


async def answer_check(holder: WsClient) -> None:
    check = await holder.next("seat_check")
    await holder.send("seat_here", check=check["check"])


async def closed_with(client: WsClient, code: str, within: float = 10.0) -> None:
    """The connection gets the error ``code`` then close 4409."""
    async with asyncio.timeout(within):
        while True:
            frame = await client.ws.receive()
            if frame.type != aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"closed before the error: {frame.type.name}")
            message = json.loads(frame.data)
            if message["type"] == "error":
                assert message["code"] == code, message
                break
        frame = await client.ws.receive()
        while frame.type == aiohttp.WSMsgType.TEXT:
            frame = await client.ws.receive()
    assert frame.type == aiohttp.WSMsgType.CLOSE, frame
    assert frame.data == CLOSE_SEAT, frame


def speaker_link(server: RunningServer) -> str:
    return token(server, Role.SPEAKER, RUSSIAN_SPEAKER, speaker=RUSSIAN_SPEAKER)


async def holding(open_ws, server: RunningServer, link: str) -> WsClient:
    client = await open_ws(server)
    await client.send("auth", v=1, token=link)
    client.welcome = await client.next("welcome")
    await client.next("state")
    return client


async def test_a_second_page_of_a_speaker_link_is_refused_while_the_first_answers(
    live_server, open_ws, peers
) -> None:
    link = speaker_link(live_server)
    first = await holding(open_ws, live_server, link)
    peers.append(await publish(first, ToneTrack(1000.0)))

    second = await arriving(open_ws, live_server, link)
    await answer_check(first)
    await closed_with(second, "seat_taken")

    await first.alive()
    live = live_server.app[LIVE_KEY]
    publishers = [c for c in live.clients if c.publisher_id is not None]
    assert [c.claims.subject for c in publishers] == [RUSSIAN_SPEAKER]


async def test_a_page_that_does_not_answer_loses_its_seat_to_the_new_one(
    live_server, open_ws
) -> None:
    link = token(live_server, Role.INTERPRETER, "anna", booth="ru-fr")
    gone = await holding(open_ws, live_server, link)  # never answers: its network dropped
    live_server.app[LIVE_KEY].seats.check_s = QUICK_SEAT_CHECK_S

    started = time.monotonic()
    newcomer = await arriving(open_ws, live_server, link)
    newcomer.welcome = await newcomer.next("welcome", within=15.0)
    # It was given its seat check's time.
    assert time.monotonic() - started >= QUICK_SEAT_CHECK_S - 0.5
    await closed_with(gone, "displaced")
    await newcomer.alive()
    booth = await newcomer.state_where(
        lambda s: any(
            i["id"] == "anna" and i["connected"]
            for b in s["booths"]
            if b["id"] == "ru-fr"
            for i in b["interpreters"]
        )
    )
    assert booth is not None


@pytest.mark.parametrize("decider", ["holder", "moderator"])
async def test_a_takeover_happens_when_the_holder_or_the_moderator_allows_it(
    live_server, open_ws, connect, decider
) -> None:
    link = speaker_link(live_server)
    studio = await connect(Role.MODERATOR, subject="marie")
    first = await holding(open_ws, live_server, link)

    second = await arriving(open_ws, live_server, link, claim=True)
    await answer_check(first)
    asked = await first.next("seat_claim")
    assert asked["pending"] is True and asked["wait_s"] > 0
    waiting = await second.next("seat_waiting")
    assert waiting["claim"] == asked["claim"]
    listed = await studio.next("seat_claims")
    assert [(c["claim"], c["role"], c["speaker"]) for c in listed["claims"]] == [
        (asked["claim"], "speaker", RUSSIAN_SPEAKER)
    ]

    decides = first if decider == "holder" else studio
    await decides.send("answer_claim", claim=asked["claim"], allow=True)
    second.welcome = await second.next("welcome")
    assert second.welcome["scope"]["speaker"] == RUSSIAN_SPEAKER
    await closed_with(first, "displaced")
    assert (await studio.next("seat_claims"))["claims"] == []
    await second.alive()


async def test_a_takeover_refused_by_the_holder_leaves_him_in_place(
    live_server, open_ws, connect
) -> None:
    link = token(live_server, Role.INTERPRETER, "anna", booth="ru-fr")
    first = await holding(open_ws, live_server, link)
    second = await arriving(open_ws, live_server, link, claim=True)
    await answer_check(first)
    asked = await first.next("seat_claim")

    await first.send("answer_claim", claim=asked["claim"], allow=False)
    await closed_with(second, "claim_refused")
    assert (await first.next("seat_claim"))["pending"] is False
    await first.alive()
    ref = await first.send("answer_claim", claim=asked["claim"], allow=True)
    assert (await first.error(ref))["code"] == "unknown_claim"


async def test_an_unanswered_request_lapses_and_a_withdrawn_one_is_forgotten(
    live_server, open_ws
) -> None:
    live_server.app[LIVE_KEY].seats.wait_s = 1.5
    link = speaker_link(live_server)
    first = await holding(open_ws, live_server, link)

    lapsing = await arriving(open_ws, live_server, link, claim=True)
    await answer_check(first)
    await first.next("seat_claim")
    await closed_with(lapsing, "claim_expired")
    assert (await first.next("seat_claim"))["pending"] is False

    leaving = await arriving(open_ws, live_server, link, claim=True)
    await answer_check(first)
    await first.next("seat_claim")
    await leaving.next("seat_waiting")
    await leaving.close()
    assert (await first.next("seat_claim"))["pending"] is False
    assert live_server.app[LIVE_KEY].seats.claims == {}
    await first.alive()


async def test_only_the_holder_or_a_moderator_decides(live_server, open_ws, connect) -> None:
    link = speaker_link(live_server)
    first = await holding(open_ws, live_server, link)
    second = await arriving(open_ws, live_server, link, claim=True)
    await answer_check(first)
    asked = await first.next("seat_claim")

    other_speaker = await connect(Role.SPEAKER, subject="elena-naumova", speaker="elena-naumova")
    ref = await other_speaker.send("answer_claim", claim=asked["claim"], allow=True)
    assert (await other_speaker.error(ref))["code"] == "forbidden"
    await first.send("seat_here", check="notachk")  # late or stray: ignored, no error
    await first.send("answer_claim", claim=asked["claim"], allow=False)
    await closed_with(second, "claim_refused")


async def test_moderators_and_two_interpreters_of_a_booth_have_no_seat_conflict(
    connect,
) -> None:
    studios = [await connect(Role.MODERATOR, subject="marie") for _ in range(2)]
    anna = await connect(Role.INTERPRETER, subject="anna", booth="ru-fr")
    boris = await connect(Role.INTERPRETER, subject="boris", booth="ru-fr")
    for client in (*studios, anna, boris):
        await client.alive()


async def test_a_holder_that_leaves_while_asked_leaves_the_seat_to_the_new_page(
    live_server, open_ws
) -> None:
    link = speaker_link(live_server)
    first = await holding(open_ws, live_server, link)
    second = await arriving(open_ws, live_server, link, claim=True)
    await answer_check(first)
    await first.next("seat_claim")
    await second.next("seat_waiting")

    await first.close()
    second.welcome = await second.next("welcome")
    await second.alive()


async def test_of_two_pages_asking_at_once_only_one_gets_the_seat(
    live_server, open_ws, connect
) -> None:
    link = speaker_link(live_server)
    studio = await connect(Role.MODERATOR, subject="marie")
    first = await holding(open_ws, live_server, link)
    asking = []
    for _ in range(2):
        page = await arriving(open_ws, live_server, link, claim=True)
        await answer_check(first)
        await page.next("seat_waiting")
        asking.append(page)
    listed = await studio.next("seat_claims")
    while len(listed["claims"]) < 2:
        listed = await studio.next("seat_claims")

    for claim in listed["claims"]:
        await studio.send("answer_claim", claim=claim["claim"], allow=True)
    outcomes = []
    for page in asking:
        message = await page.receive()
        while message["type"] not in ("welcome", "error"):
            message = await page.receive()
        outcomes.append(message.get("code", "welcome"))
    assert sorted(outcomes) == ["seat_taken", "welcome"]


async def test_a_seat_message_from_another_node_that_cannot_be_read_is_skipped(
    live_server, open_ws, caplog
) -> None:
    live = live_server.app[LIVE_KEY]
    holder = await holding(open_ws, live_server, speaker_link(live_server))
    garbled: list[dict[str, Any]] = [
        {},
        {"view": {"claim": 7}, "holder": {"node": live.node, "ticket": "t"}, "wait_s": 1},
        {"check": "c", "to": live.node},
        {"seat": 3},
    ]
    for args in garbled:
        for op in ("sit", "unseat", "seat_check", "seat_here", "seat_claim", "seat_answer"):
            live.seats.on_change(Change(op, args, 1.0, "another-node"))
    assert "skipped a seat message that could not be read" in caplog.text
    assert live.seats.view().claims == []
    await holder.alive()
