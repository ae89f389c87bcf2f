"""A node's network settings at work: media on its RTC ports and addresses only, and TURN
credentials in every welcome without the secret they are made with."""

from __future__ import annotations

import functools
import logging
import re
import time

import aiohttp
import pytest

from signaling.tokens import Role
from signaling.turn_credentials import turn_credentials
from signaling.websocket import SFU_KEY, install_live
from tests.signaling.conftest import token
from tests.signaling.media_peers import SPEAKER_HZ, Subscription, on_air_setup, peer_connection
from tests.support.ports import free_udp_range
from tests.support.tones import ToneTrack

pytestmark = pytest.mark.timeout(90)

TURN_SECRET = "turn-secret-" + "q" * 30
_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ host", re.MULTILINE)


async def test_media_uses_only_the_nodes_rtc_ports(start_server, connect, peers):
    first, last = free_udp_range(10)
    server = await start_server(extensions=[install_live], rtc_ports=f"{first}-{last}")
    config = server.app[SFU_KEY].config
    assert config.port_range == (first, last)
    assert config.host_addresses == ("127.0.0.1",)

    on_server = functools.partial(connect, server=server)
    await on_air_setup(on_server, peers)
    attendee = await on_server(Role.ATTENDEE, subject="reg-1")
    media = await Subscription.open(attendee)
    peers.extend([media, attendee])
    await media.hears("channel", SPEAKER_HZ)

    candidates = _CANDIDATE.findall(media.pc.remoteDescription.sdp)
    assert candidates
    assert all(host == "127.0.0.1" and first <= int(port) <= last for host, port in candidates)


async def test_every_welcome_carries_turn_credentials_and_never_the_secret(
    start_server, open_ws, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    server = await start_server(
        extensions=[install_live],
        turn_urls="turn:127.0.0.1:3478?transport=udp, turn:127.0.0.1:3478?transport=tcp",
        turn_secret=TURN_SECRET,
        turn_ttl_s=600,
    )
    for role, scope in ((Role.ATTENDEE, {}), (Role.SPEAKER, {"speaker": "andre-samray"})):
        client = await open_ws(server)
        subject = scope.get("speaker", "reg-turn")
        before = int(time.time())
        await client.send("auth", v=1, token=token(server, role, subject, **scope))
        welcome = await client.next("welcome")
        await client.close()
        (turn,) = welcome["ice_servers"]
        assert turn["urls"] == [
            "turn:127.0.0.1:3478?transport=udp",
            "turn:127.0.0.1:3478?transport=tcp",
        ]
        expiry, tag = turn["username"].split(":")
        # Names the role, not the person; expires after the configured time.
        assert tag == role.value and subject not in turn["username"]
        assert before + 600 <= int(expiry) <= int(time.time()) + 600
        made = turn_credentials(TURN_SECRET, tag, 0, int(expiry))
        assert turn["credential"] == made.credential
        assert TURN_SECRET not in str(welcome)

    async with aiohttp.ClientSession() as http:
        link = f"{server.url}/watch?token={token(server, Role.ATTENDEE, 'reg-turn')}"
        for url in (link, f"{server.url}/", f"{server.url}/healthz"):
            async with http.get(url) as response:
                assert TURN_SECRET not in await response.text()
    assert TURN_SECRET not in caplog.text


async def test_a_page_past_the_nodes_port_range_is_told_and_the_others_go_on(
    start_server, connect, peers, caplog: pytest.LogCaptureFixture
):
    first, last = free_udp_range(2)
    server = await start_server(extensions=[install_live], rtc_ports=f"{first}-{last}")
    on_server = functools.partial(connect, server=server)
    # The speaker and the interpreter take the two ports.
    moderator, _, _ = await on_air_setup(on_server, peers)

    attendee = await on_server(Role.ATTENDEE, subject="reg-late")
    peers.append(attendee)
    ref = await attendee.send("subscribe")
    error = await attendee.error(ref)
    assert error["code"] == "server_full"
    assert "every media port it may use is taken; try again in a moment" in error["message"]
    await attendee.alive()

    boris = await on_server(Role.INTERPRETER, subject="boris", booth="ru-fr")
    peers.append(boris)
    offer_pc = peer_connection()
    peers.append(offer_pc)
    offer_pc.addTransceiver(ToneTrack(660), direction="sendonly")
    await offer_pc.setLocalDescription(await offer_pc.createOffer())
    ref = await boris.send("offer", purpose="publish", sdp=offer_pc.localDescription.sdp)
    assert (await boris.error(ref))["code"] == "server_full"

    # The operator learns what to do; the others keep their media.
    assert f"{first}-{last}" in caplog.text and "widen the range" in caplog.text
    state = await moderator.state_where(lambda s: s["on_air"] is not None)
    assert state["on_air"]["connected"] is True
    assert state["publishers"]["interpreters"]["ru-fr"] == ["anna"]
