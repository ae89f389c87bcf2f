"""A publisher's network drops for some seconds and returns, on a real `dragoman serve`.

tests/e2e/test_network_outage.py cuts a speaker's Chromium in front of an in-process
node; this cuts one publisher of a `dragoman serve` process (its own process, as people
run it): the interpreter, whose tone is the French channel, or the speaker, whose tone is
the Russian one (the floor). Only that publisher reaches the node through the impairing
relay of testbed/ (the node announces the relay's address; the publisher's own
candidates are removed, a NAT nobody reaches); the attendee and the other staff reach
the node directly, so the cut hits one person only.

While the relay is cut the attendee's channel does not carry that publisher; once it
returns the attendee hears him again within a bounded time:

- `back`: the publisher comes back from where he was: ICE as negotiated resumes;
- `moved`: he comes back from elsewhere (another network: his old address is gone for
  good), and only what his page does, publishing again on the same WebSocket, brings his
  voice back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from signaling.tokens import Role
from tests.faults.people import (
    INTERPRETER_HZ,
    SPEAKER_HZ,
    Person,
    announced_as,
    on_air,
    staff,
)
from tests.support.impaired_network import RELAY_HOST, UdpRelay, strip_candidates
from tests.support.ports import free_udp_range
from tests.support.server import dragoman_env

pytestmark = pytest.mark.timeout(180)

SECRET = "faults-publisher-outage-" + "x" * 24
#: Past the 1 s after which the node takes a publisher's media for stopped, and long
#: enough to show his voice gone (2 s of listening) before it returns.
OUTAGE_S = 4.0
#: The goal is a few seconds; a loaded machine shared with other work gets more room.
BACK_WITHIN_S = 15.0


@pytest.fixture
async def relay() -> AsyncIterator[UdpRelay]:
    first, last = free_udp_range(40, addresses=("127.0.0.1", RELAY_HOST))
    relay = await UdpRelay(range(first, last + 1), relay_host=RELAY_HOST, seed=12).start()
    try:
        yield relay
    finally:
        await relay.close()


@pytest.mark.parametrize(
    ("who", "moved"),
    [("interpreter", False), ("interpreter", True), ("speaker", False)],
    ids=["interpreter-back", "interpreter-moved", "speaker-back"],
)
async def test_a_publisher_cut_off_is_heard_again_when_his_network_returns(
    who: str, moved: bool, tmp_path: Path, serve_process, relay: UdpRelay
):
    ports = relay.ports
    env = dragoman_env(
        DRAGOMAN_SECRET=SECRET,
        DRAGOMAN_RTC_PORTS=f"{min(ports)}-{max(ports)}",
        DRAGOMAN_RTC_ADDRESSES=relay.node_host,
        DRAGOMAN_ICE_PUBLIC_ADDRESS=relay.relay_host,
    )
    node = await serve_process(tmp_path / "data", env=env)
    direct = announced_as(relay.relay_host, relay.node_host)
    moderator, speaker, interpreter = staff(SECRET)
    cut_off = interpreter if who == "interpreter" else speaker
    # The one behind the relay: no candidates of his own, the node's address as announced.
    cut_off.rewrite_offer = strip_candidates
    for person in (moderator, speaker, interpreter):
        if person is not cut_off:
            person.rewrite_answer = direct
    channel, tone = ("fr", INTERPRETER_HZ) if who == "interpreter" else ("ru", SPEAKER_HZ)
    attendee = Person(Role.ATTENDEE, "reg-1", SECRET, channel=channel, rewrite_answer=direct)
    everyone = [moderator, speaker, interpreter, attendee]
    try:
        await on_air(moderator, speaker, interpreter, node.url)
        await attendee.join(node.url)
        await attendee.hears(tone)
        assert relay.upstream.counters.forwarded > 0, "the publisher bypassed the relay"

        relay.cut()
        await asyncio.sleep(1.0)
        # What was in flight has played out: the channel no longer carries him.
        with pytest.raises(AssertionError):
            await attendee.hears(tone, within=2.0)
        await asyncio.sleep(max(0.0, OUTAGE_S - 3.0))

        relay.restore(moved=moved)
        restored = time.monotonic()
        if moved:
            # His page publishes again when its connection failed (it does not wait for
            # ICE to say so: the page's own watchdog), on the socket it kept.
            await cut_off.start_media()
        await attendee.hears(tone, within=BACK_WITHIN_S)
        back_after = time.monotonic() - restored
        print(f"\n{who} {'moved' if moved else 'back'}: heard again {back_after:.2f} s after")
        assert back_after < BACK_WITHIN_S

        # Nobody else noticed: the session runs, the speaker stays on air.
        assert moderator.client is not None
        await moderator.client.alive()
        state = await moderator.client.state_where(lambda s: s["session"] == "plenary")
        assert state["on_air"]["speaker"] == speaker.subject
    finally:
        for person in everyone:
            await person.close()
