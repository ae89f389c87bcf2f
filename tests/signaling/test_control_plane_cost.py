"""The control plane's cost grows with the audience, not with its square.

An attendee joining, or choosing a channel, concerns him alone: he is answered, nobody
else is sent anything for it. The staff see listener counts, which change with every
attendee: at most once a second.
"""

from __future__ import annotations

import asyncio
import time

from signaling.tokens import Role
from tests.signaling.conftest import WsClient

AUDIENCE = 30
QUIET_S = 1.5


async def _messages_within(client: WsClient, seconds: float) -> list[dict]:
    received = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            received.append(await client.receive(within=left))
        except TimeoutError:
            break
    return received


async def test_a_join_wave_sends_nothing_to_those_already_there(connect, peers):
    moderator = await connect(Role.MODERATOR)
    peers.append(moderator)
    audience = []
    for n in range(AUDIENCE):
        audience.append(await connect(Role.ATTENDEE, subject=f"reg-{n}"))
    peers.extend(audience)
    # Each got his welcome and his state when he joined (in `connect`); since then, the
    # others' arrivals have told him nothing.
    received = await asyncio.gather(*(_messages_within(a, QUIET_S) for a in audience))
    assert [len(r) for r in received] == [0] * AUDIENCE, received[0]
    assert len(await _messages_within(moderator, 0.2)) <= 2


async def test_an_attendee_choice_is_answered_to_him_alone_and_counts_reach_staff_once_a_second(
    connect, peers
):
    moderator = await connect(Role.MODERATOR)
    chooser = await connect(Role.ATTENDEE, subject="reg-chooser")
    his_other_tab = await connect(Role.ATTENDEE, subject="reg-chooser")
    others = [await connect(Role.ATTENDEE, subject=f"reg-{n}") for n in range(5)]
    peers.extend([moderator, chooser, his_other_tab, *others])
    for language in ["fr", "ru"] * 10:
        await chooser.send("select_channel", language=language)
    answers = [m for m in await _messages_within(chooser, QUIET_S) if m["type"] == "state"]
    # Answered (states waiting in his queue are merged into the newest, as for any client).
    assert 1 <= len(answers) <= 20
    assert answers[-1]["you"]["channel"] == "ru"
    # His other tab of the same link follows his choice too.
    tab = [m for m in await _messages_within(his_other_tab, 0.1) if m["type"] == "state"]
    assert tab and tab[-1]["you"]["channel"] == "ru", tab
    received = await asyncio.gather(*(_messages_within(o, 0.1) for o in others))
    assert [len(r) for r in received] == [0] * len(others)
    # 20 choices in well under a second: the staff got the counts at most twice.
    staff = [m for m in await _messages_within(moderator, 0.1) if m["type"] == "state"]
    assert len(staff) <= 2
