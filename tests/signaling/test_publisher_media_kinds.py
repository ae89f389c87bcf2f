"""Each role publishes the media it is for, with real aiortc offers: an interpreter of a
spoken-language booth audio only, a sign-language interpreter video (and audio), a speaker
audio and video; attendees and the moderator publish nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiortc.mediastreams import MediaStreamTrack

from signaling.tokens import Role
from signaling.websocket import install_live
from tests.signaling.conftest import WsClient, token
from tests.signaling.media_peers import INTERPRETER_HZ, peer_connection, publish
from tests.support.server import StartServer, program_with
from tests.support.tones import PatternVideoTrack, ToneTrack

pytestmark = pytest.mark.timeout(90)

SIGN_BOOTH = {"id": "lsfb", "name": "Langue des signes", "kind": "sign", "works_into": ["lsfb"]}


async def offer_of(peers: list, *tracks: MediaStreamTrack) -> str:
    pc = peer_connection()
    peers.append(pc)
    for track in tracks:
        pc.addTransceiver(track, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp


@pytest.fixture
async def sign_server(tmp_path: Path, start_server: StartServer):
    program = program_with(tmp_path, booths=[SIGN_BOOTH])
    return await start_server(extensions=[install_live], event_file=program)


async def connect_to(server, open_ws, role: Role, subject: str, **scope) -> WsClient:
    client = await open_ws(server)
    await client.send("auth", v=1, token=token(server, role, subject, **scope))
    client.welcome = await client.next("welcome")
    await client.next("state")
    return client


async def test_an_interpreter_with_a_camera_is_refused_by_name(sign_server, open_ws, peers):
    interpreter = await connect_to(sign_server, open_ws, Role.INTERPRETER, "anna", booth="ru-fr")
    moderator = await connect_to(sign_server, open_ws, Role.MODERATOR, "mod")
    sdp = await offer_of(peers, ToneTrack(INTERPRETER_HZ), PatternVideoTrack())
    ref = await interpreter.send("offer", purpose="publish", sdp=sdp)
    error = await interpreter.error(ref)
    assert error["code"] == "media_not_allowed"
    assert "sends video" in error["message"]
    assert "spoken-language booth" in error["message"]
    assert "audio only" in error["message"]
    # Nothing of it reached the node; the same interpreter publishes his voice at once.
    await moderator.alive()
    assert "anna" not in moderator.state["publishers"]["interpreters"]["ru-fr"]
    peers.append(await publish(interpreter, ToneTrack(INTERPRETER_HZ)))
    await moderator.state_where(lambda s: "anna" in s["publishers"]["interpreters"]["ru-fr"])


async def test_a_sign_interpreter_publishes_video_and_audio(sign_server, open_ws, peers):
    signer = await connect_to(sign_server, open_ws, Role.INTERPRETER, "sofia", booth="lsfb")
    peers.append(await publish(signer, ToneTrack(INTERPRETER_HZ), PatternVideoTrack()))
    moderator = await connect_to(sign_server, open_ws, Role.MODERATOR, "mod")
    await moderator.state_where(lambda s: "sofia" in s["publishers"]["interpreters"]["lsfb"])


async def test_a_speaker_publishes_audio_and_video(sign_server, open_ws, peers):
    speaker = await connect_to(
        sign_server, open_ws, Role.SPEAKER, "andre-samray", speaker="andre-samray"
    )
    peers.append(await publish(speaker, ToneTrack(1000), PatternVideoTrack()))
    await speaker.state_where(lambda s: s["you"]["publishing"])


@pytest.mark.parametrize("role", [Role.ATTENDEE, Role.MODERATOR])
async def test_listeners_publish_nothing(sign_server, open_ws, peers, role):
    client = await connect_to(sign_server, open_ws, role, "listener")
    sdp = await offer_of(peers, ToneTrack(INTERPRETER_HZ))
    ref = await client.send("offer", purpose="publish", sdp=sdp)
    error = await client.error(ref)
    assert error["code"] == "forbidden"
