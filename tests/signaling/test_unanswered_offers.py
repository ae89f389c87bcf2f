"""A subscription offer nobody answers is withdrawn: its peer connection closed, its UDP
sockets and tasks freed, the client told (``offer_expired``).

Real peers: an aiortc client subscribes, reads the offer, prepares its answer and never
sends it. The server runs in this process, so its file descriptors and tasks are this
process's.
"""

from __future__ import annotations

import asyncio
import os

import pytest
from aiortc import RTCSessionDescription

from signaling.tokens import Role
from signaling.websocket import SFU_KEY, install_live
from tests.signaling.conftest import WsClient, token
from tests.signaling.media_peers import Subscription, peer_connection

pytestmark = pytest.mark.timeout(90)

ANSWER_TIMEOUT_S = 2.0


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


async def settled(read, target: int, within: float = 15.0, margin: int = 0) -> int:
    """Wait until `read()` is at most `target + margin`; returns the last reading."""
    deadline = asyncio.get_running_loop().time() + within
    value = read()
    while value > target + margin and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
        value = read()
    return value


@pytest.fixture
async def server(start_server):
    return await start_server(
        extensions=[install_live], subscribe_answer_timeout_s=ANSWER_TIMEOUT_S
    )


async def connect_to(server, open_ws, subject: str) -> WsClient:
    client = await open_ws(server)
    await client.send("auth", v=1, token=token(server, Role.ATTENDEE, subject))
    await client.next("welcome")
    await client.next("state")
    return client


async def test_an_offer_never_answered_is_withdrawn_and_its_sockets_freed(server, open_ws):
    sfu = server.app[SFU_KEY]
    clients = [await connect_to(server, open_ws, f"silent-{n}") for n in range(3)]
    await asyncio.sleep(0.5)
    fds_before = open_descriptors()
    tasks_before = len(asyncio.all_tasks())

    refs = []
    for client in clients:
        refs.append(await client.send("subscribe"))
        offer = await client.next("offer")
        # A real peer reads the offer and makes its answer, then never sends it.
        pc = peer_connection()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await pc.close()
    assert sfu.subscriber_count == 3
    held = open_descriptors()
    assert held > fds_before, "the offers should hold the server's sockets"

    for client, ref in zip(clients, refs, strict=True):
        expired = await client.next("error", within=ANSWER_TIMEOUT_S + 10)
        assert expired["code"] == "offer_expired"
        assert expired["ref"] == ref
        assert "send subscribe again" in expired["message"]
    assert sfu.subscriber_count == 0
    # Every socket and task of the withdrawn offers is gone (a couple of short-lived
    # descriptors of the loop may come and go).
    fds_after = await settled(open_descriptors, fds_before, margin=2)
    assert fds_after <= fds_before + 2, (fds_before, held, fds_after)
    tasks_after = await settled(lambda: len(asyncio.all_tasks()), tasks_before, margin=2)
    assert tasks_after <= tasks_before + 2, (tasks_before, tasks_after)
    # The connections go on, and may subscribe again.
    for client in clients:
        await client.alive()


async def test_an_answer_in_time_keeps_the_subscription(server, open_ws, peers):
    sfu = server.app[SFU_KEY]
    client = await connect_to(server, open_ws, "prompt")
    peers.append(await Subscription.open(client))
    await asyncio.sleep(ANSWER_TIMEOUT_S + 1.5)
    assert sfu.subscriber_count == 1
    await client.alive()  # and no offer_expired came before the pong


async def test_an_answer_after_the_withdrawal_is_refused(server, open_ws, peers):
    client = await connect_to(server, open_ws, "late")
    await client.send("subscribe")
    offer = await client.next("offer")
    pc = peer_connection()
    peers.append(pc)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    assert (await client.next("error", within=ANSWER_TIMEOUT_S + 10))["code"] == "offer_expired"
    ref = await client.send("answer", purpose="subscribe", sdp=pc.localDescription.sdp)
    assert (await client.error(ref))["code"] == "no_offer"


async def test_one_pending_offer_per_connection(server, open_ws):
    """Subscribing again replaces the offer: a connection never holds two."""
    sfu = server.app[SFU_KEY]
    client = await connect_to(server, open_ws, "again")
    for _ in range(4):
        await client.send("subscribe")
        await client.next("offer")
    assert sfu.subscriber_count == 1
    assert (await client.next("error", within=ANSWER_TIMEOUT_S + 10))["code"] == "offer_expired"
    assert sfu.subscriber_count == 0
