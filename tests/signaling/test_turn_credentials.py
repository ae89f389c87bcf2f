"""TURN credentials by the TURN REST API scheme, and what each page is handed.

That coturn accepts them is proven against a real coturn in tests/e2e/test_turn.py."""

from __future__ import annotations

import base64
import re
import time

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from pydantic import SecretStr

from signaling.settings import IceServer
from signaling.turn_credentials import PageIceServers, turn_credentials
from tests.support.turn_server import TurnServer

SECRET = "s" * 40


def test_username_is_the_expiry_and_the_tag() -> None:
    made = turn_credentials(SECRET, "attendee", ttl_s=3600, now=1_700_000_000.7)
    assert made.username == "1700003600:attendee"


def test_credential_is_an_hmac_sha1_of_the_username_in_base64() -> None:
    made = turn_credentials(SECRET, "attendee", ttl_s=3600, now=1_700_000_000)
    assert len(base64.b64decode(made.credential, validate=True)) == 20  # SHA-1
    assert made == turn_credentials(SECRET, "attendee", ttl_s=3600, now=1_700_000_000)
    others = [
        turn_credentials("x" * 40, "attendee", 3600, 1_700_000_000),
        turn_credentials(SECRET, "speaker", 3600, 1_700_000_000),
        turn_credentials(SECRET, "attendee", 3601, 1_700_000_000),
    ]
    assert all(other.credential != made.credential for other in others)
    assert SECRET not in made.username + made.credential


def test_each_page_gets_the_configured_servers_then_its_own_turn_credentials() -> None:
    now = [1_700_000_000.0]
    servers = PageIceServers(
        configured=(IceServer(urls=("stun:stun.example.org",)),),
        turn_urls=("turn:turn.example.org", "turns:turn.example.org:443"),
        turn_secret=SecretStr(SECRET),
        turn_ttl_s=600,
        clock=lambda: now[0],
    )
    stun, turn = servers.for_page("attendee")
    assert stun.model_dump() == {"urls": ["stun:stun.example.org"]}
    assert turn.urls == ["turn:turn.example.org", "turns:turn.example.org:443"]
    assert turn.username == "1700000600:attendee"
    assert turn.credential == turn_credentials(SECRET, "attendee", 600, now[0]).credential
    now[0] += 60
    later = servers.for_page("attendee")[1]
    assert re.fullmatch(r"1700000660:attendee", later.username or "")


def test_without_turn_no_credentials_are_made() -> None:
    assert PageIceServers().for_page("attendee") == []


# -- against a real coturn (tests/support/turn_server.py) -----------------------------


async def relay_candidates(server: TurnServer, username: str, credential: str) -> list[str]:
    """The relayed candidates an aiortc peer gathers with these credentials."""
    pc = RTCPeerConnection(
        RTCConfiguration(
            iceServers=[
                RTCIceServer(urls=server.urls[0], username=username, credential=credential)
            ],
            iceTransportPolicy=RTCIceTransportPolicy.RELAY,
        )
    )
    try:
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        return [line for line in pc.localDescription.sdp.splitlines() if " typ relay" in line]
    finally:
        await pc.close()


async def test_coturn_accepts_the_credentials_the_module_makes(turn_server: TurnServer) -> None:
    made = turn_credentials(turn_server.secret, "attendee", ttl_s=600, now=time.time())
    (relayed,) = await relay_candidates(turn_server, made.username, made.credential)
    host, port = relayed.split()[4:6]
    assert host == "127.0.0.1"
    assert turn_server.relay_ports[0] <= int(port) <= turn_server.relay_ports[1]


async def test_coturn_refuses_expired_and_forged_credentials(turn_server: TurnServer) -> None:
    expired = turn_credentials(turn_server.secret, "attendee", ttl_s=60, now=time.time() - 3600)
    forged = turn_credentials("not-the-secret-" + "x" * 30, "attendee", 600, time.time())
    tampered = turn_credentials(turn_server.secret, "attendee", ttl_s=600, now=time.time())
    # A later expiry under the same credential: the HMAC no longer matches.
    longer = f"{int(tampered.username.split(':')[0]) + 86400}:attendee"
    for username, credential in (
        (expired.username, expired.credential),
        (forged.username, forged.credential),
        (longer, tampered.credential),
    ):
        assert await relay_candidates(turn_server, username, credential) == [], username
