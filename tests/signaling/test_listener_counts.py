"""Listener and client counts are kept as attendees come, choose and go.

The node counts them as things change, so that reading them (the staff's state, the
node's presence, /metrics) costs the same however large the audience; these tests
check the kept counts against what the attendees did, with real media subscriptions.
"""

from __future__ import annotations

import re

import aiohttp

from signaling.tokens import Role
from tests.signaling.media_peers import Subscription
from tests.support.server import RunningServer


async def _metrics(server: RunningServer) -> dict[str, float]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/metrics") as response:
            text = await response.text()
    found = re.findall(r'^dragoman_live_(listeners|clients)\{\w+="([^"]+)"\} (\S+)$', text, re.M)
    return {f"{family}:{label}": float(value) for family, label, value in found}


async def test_counts_follow_attendees_who_subscribe_choose_resubscribe_and_leave(
    live_server, connect, peers
) -> None:
    moderator = await connect(Role.MODERATOR)
    # Two pages of one link share its choices; a third attendee has his own.
    first_page = await connect(Role.ATTENDEE, subject="reg-a")
    second_page = await connect(Role.ATTENDEE, subject="reg-a")
    other = await connect(Role.ATTENDEE, subject="reg-b")
    peers.extend([moderator, first_page, second_page, other])
    media = {}
    for name, client in (("first", first_page), ("second", second_page), ("other", other)):
        media[name] = await Subscription.open(client)
        peers.append(media[name])

    async def counts_are(original: int, ru: int, fr: int, attendees: int) -> None:
        expected = {"original": original, "ru": ru, "fr": fr}
        await moderator.state_where(lambda s: s["listeners"] == expected, within=5)
        metrics = await _metrics(live_server)
        assert {c: metrics[f"listeners:{c}"] for c in expected} == expected
        assert metrics["clients:attendee"] == attendees
        assert metrics["clients:moderator"] == 1

    await counts_are(original=3, ru=0, fr=0, attendees=3)
    await first_page.send("select_channel", language="fr")
    await counts_are(original=1, ru=0, fr=2, attendees=3)
    await other.send("select_channel", language="ru")
    await counts_are(original=0, ru=1, fr=2, attendees=3)
    # Subscribing again replaces the subscription: still counted once.
    await media["second"].close()
    media["second"] = await Subscription.open(second_page)
    peers.append(media["second"])
    await counts_are(original=0, ru=1, fr=2, attendees=3)
    await first_page.close()
    await counts_are(original=0, ru=1, fr=1, attendees=2)
    await other.send("select_channel", language="fr")
    await counts_are(original=0, ru=0, fr=2, attendees=2)
