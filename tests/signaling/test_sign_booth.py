"""Sign-language booths with real peers: the interpreter on air in a sign booth feeds a
video, attendees show it over the program only when they choose to, the moderator sees
it, and the booth works like any other (handover, failover) without touching the audio
channels."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from signaling.tokens import Role
from signaling.websocket import install_live
from tests.signaling.conftest import WsClient, token
from tests.signaling.media_peers import SPEAKER_HZ, Subscription, publish
from tests.streamer.peers import eventually
from tests.support.server import StartServer, program_with
from tests.support.tones import PatternVideoTrack, ToneTrack

pytestmark = pytest.mark.timeout(90)

SIGN_BOOTH = {"id": "lsfb", "name": "Langue des signes", "kind": "sign", "works_into": ["lsfb"]}


@pytest.fixture
async def sign_server(tmp_path: Path, start_server: StartServer):
    program = program_with(tmp_path, booths=[SIGN_BOOTH])
    return await start_server(extensions=[install_live], event_file=program)


@pytest.fixture
def connect_sign(sign_server, open_ws):
    async def connect_(role: Role, subject: str | None = None, **scope) -> WsClient:
        client = await open_ws(sign_server)
        await client.send("auth", v=1, token=token(sign_server, role, subject, **scope))
        client.welcome = await client.next("welcome")
        await client.next("state")
        return client

    return connect_


async def test_a_sign_interpreter_is_shown_to_those_who_choose_it(connect_sign, peers) -> None:
    moderator = await connect_sign(Role.MODERATOR)
    booths = {b["id"]: b for b in moderator.welcome["event"]["booths"]}
    assert booths["lsfb"]["kind"] == "sign" and booths["ru-fr"]["kind"] == "spoken"
    speaker = await connect_sign(
        Role.SPEAKER, subject="alexander-tokovinin", speaker="alexander-tokovinin"
    )
    peers.append(await publish(speaker, ToneTrack(SPEAKER_HZ), PatternVideoTrack()))
    signer = await connect_sign(Role.INTERPRETER, subject="sofia", booth="lsfb")
    peers.append(await publish(signer, PatternVideoTrack(width=176, height=144)))
    await signer.send("mic", on=True)
    peers.extend([moderator, speaker, signer])
    state = await moderator.state_where(
        lambda s: (
            "sofia" in s["publishers"]["interpreters"]["lsfb"]
            and any(b["id"] == "lsfb" and b["on_air"] == "sofia" for b in s["booths"])
        )
    )
    await moderator.send("start_session", session_id="plenary")
    await moderator.send("put_on_air", speaker_id="alexander-tokovinin")
    # The sign booth feeds no language channel.
    assert set(state["channels"]) == {"ru", "fr"}
    assert all(c["booth"] != "lsfb" for c in state["channels"].values())
    ref = await signer.send("set_direction", into="lsfb")
    assert (await signer.error(ref))["code"] == "direction_refused"

    attendee = await connect_sign(Role.ATTENDEE, "reg-sign")
    peers.append(attendee)
    media = await Subscription.open(attendee, video=True)
    peers.append(media)
    assert [slot["name"] for slot in media.slots] == ["channel", "original", "video", "sign"]
    await media.hears("channel", SPEAKER_HZ)
    # Not chosen: nothing is sent on the sign slot.
    await attendee.alive()
    assert media.video["sign"].frames == 0
    await attendee.send("select_sign", booth="lsfb")
    seen = await attendee.state_where(lambda s: s["you"]["sign"] == "lsfb")
    assert seen["you"]["sign"] == "lsfb"
    await eventually(lambda: media.video["sign"].frames >= 10, within=15, what="signing frames")
    await attendee.send("select_sign", booth=None)
    await attendee.state_where(lambda s: s["you"]["sign"] is None)

    ref = await attendee.send("select_sign", booth="ru-fr")
    error = await attendee.error(ref)
    assert error["code"] == "unknown_booth" and "lsfb" in error["message"]

    # The moderator sees each sign booth beside the program.
    studio = await Subscription.open(moderator, video=True)
    peers.append(studio)
    assert "sign:lsfb" in [slot["name"] for slot in studio.slots]
    await eventually(lambda: studio.video["sign:lsfb"].frames >= 10, within=15, what="preview")


async def test_a_sign_booths_partner_takes_over_when_the_signers_camera_stops(
    connect_sign, peers
) -> None:
    """Failover watches a sign booth's cameras as it watches the other booths' microphones."""
    moderator = await connect_sign(Role.MODERATOR)
    sofia = await connect_sign(Role.INTERPRETER, subject="sofia", booth="lsfb")
    sofia_pc = await publish(sofia, PatternVideoTrack())
    marc = await connect_sign(Role.INTERPRETER, subject="marc", booth="lsfb")
    peers.extend([sofia_pc, await publish(marc, PatternVideoTrack()), moderator, sofia, marc])
    await moderator.state_where(
        lambda s: set(s["publishers"]["interpreters"]["lsfb"]) == {"sofia", "marc"}
    )
    await sofia.send("mic", on=True)
    await moderator.state_where(
        lambda s: any(b["id"] == "lsfb" and b["on_air"] == "sofia" for b in s["booths"])
    )
    await asyncio.sleep(0.5)  # her camera is seen live while she is on air
    for sender in sofia_pc.getSenders():
        await sender.stop()
    state = await moderator.state_where(
        lambda s: any(b["id"] == "lsfb" and b["on_air"] == "marc" for b in s["booths"]),
        within=10,
    )
    [booth] = [b for b in state["booths"] if b["id"] == "lsfb"]
    assert (booth["last_failover"]["lost"], booth["last_failover"]["to"]) == ("sofia", "marc")
