"""A node whose link endpoint stands behind a NAT: it binds one address, announces another.

Node A binds its link endpoint on 127.0.0.1:P (``DRAGOMAN_LINK_PORT``) and announces
127.0.0.1:Q (``DRAGOMAN_LINK_PUBLIC_ADDRESS``), where a NAT (tests/support/udp_nat.py)
forwards Q to P and sends A's answers back from Q, as a container's published port or
a cloud machine's 1:1 NAT does. Node B (same redis-server, same secret) finds Q in the registry,
pulls from it, takes the answers coming from Q for A's, and its attendee hears the
channel the interpreter on A feeds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from signaling.tokens import Role
from signaling.websocket import SFU_KEY, install_live
from testbed.ports import free_udp_range
from tests.signaling.media_peers import RUSSIAN_SPEAKER, Subscription, ToneTrack, publish
from tests.support.udp_nat import PortForward

SECRET = "cluster-secret-" + "x" * 24
RUSSIAN_HZ, ANNA_HZ = 1000.0, 440.0


@pytest.fixture
async def nat() -> AsyncIterator[PortForward]:
    forward = await PortForward().start()
    yield forward
    await forward.close()


async def test_an_attendee_hears_a_node_whose_link_is_behind_a_nat(
    start_server, redis_url, connect, peers, nat: PortForward
) -> None:
    public = ("127.0.0.1", nat.port)
    private = ("127.0.0.1", free_udp_range(1)[0])
    nat.forward_to(private)
    a = await start_server(
        extensions=[install_live],
        redis_url=redis_url,
        secret=SECRET,
        link_port=private[1],
        link_public_address=f"127.0.0.1:{nat.port}",
    )
    origin = a.app[SFU_KEY]
    assert origin.link_bound_address == private
    assert origin.link_address == public
    b = await start_server(extensions=[install_live], redis_url=redis_url, secret=SECRET)
    edge = b.app[SFU_KEY]

    moderator = await connect(Role.MODERATOR, server=a)
    russian = await connect(
        Role.SPEAKER, subject=RUSSIAN_SPEAKER, speaker=RUSSIAN_SPEAKER, server=a
    )
    anna = await connect(Role.INTERPRETER, subject="anna", booth="ru-fr", server=a)
    peers.extend([moderator, russian, anna])
    peers.append(await publish(russian, ToneTrack(RUSSIAN_HZ)))
    peers.append(await publish(anna, ToneTrack(ANNA_HZ)))
    await moderator.state_where(
        lambda s: (
            len(s["publishers"]["speakers"]) == 1
            and len(s["publishers"]["interpreters"]["ru-fr"]) == 1
        )
    )
    await anna.send("mic", on=True)
    await moderator.send("start_session", session_id="plenary")
    await moderator.send("put_on_air", speaker_id=RUSSIAN_SPEAKER)

    attendee = await connect(Role.ATTENDEE, subject="reg-b", server=b)
    peers.append(attendee)
    await attendee.send("select_channel", language="fr")
    await attendee.state_where(lambda s: s["you"]["channel"] == "fr")
    media = await Subscription.open(attendee)
    peers.append(media)
    await media.hears("channel", ANNA_HZ)

    # B pulled from the announced address, through the NAT, both ways (one audio output:
    # a second of its packets).
    assert set(edge.pulls().values()) == {public}
    deadline = time.monotonic() + 5.0
    while nat.counters.outbound <= 50 and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assert nat.counters.inbound > 0 and nat.counters.outbound > 50, nat.counters
    # A serves B at the address the NAT maps it to: it never saw B's own.
    (served,) = origin.stats()["links"]["edges"]
    host, _, port = served.rpartition(":")
    assert (host, int(port)) in nat.mapped_addresses()
    (pulled,) = edge.stats()["links"]["origins"].values()
    assert pulled["up"] and pulled["packets_in"] > 50, pulled
