"""Staff links that can be taken back: `dragoman invite` records each link, `dragoman
revoke` (another process) or the studio's ``revoke_link`` takes it back, the open page
holding it is closed with 4410 and the link is refused from then on."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from signaling.invitations import Invitation
from signaling.live.clients import CLOSE_REVOKED
from signaling.live.event import PUBLISHER_GRACE_S
from signaling.tokens import Role
from tests.support.server import RunningServer, dragoman, dragoman_env

from .conftest import WsClient
from .media_peers import RUSSIAN_SPEAKER, ToneTrack, publish

#: The node polls the store every second for revocations made by another process.
CLOSED_WITHIN_S = 8.0


async def invite(server: RunningServer, *args: str) -> tuple[str, str]:
    """A staff link made by the CLI for this server: (its token, its invitation id)."""
    result = await dragoman(
        "invite", *args, "--data-dir", server.settings.data_dir, "--public-url", server.url
    )
    assert result.status == 0, result.stderr
    token = result.stdout.strip().split("?token=", 1)[1]
    invitation = server.signer.verify(token).invitation
    assert invitation is not None and invitation in result.stderr
    return token, invitation


async def open_with(open_ws, server: RunningServer, token: str) -> WsClient:
    client = await open_ws(server)
    await client.send("auth", v=1, token=token)
    return client


async def welcomed(open_ws, server: RunningServer, token: str) -> WsClient:
    client = await open_with(open_ws, server, token)
    client.welcome = await client.next("welcome")
    await client.next("state")
    return client


async def closed_because(client: WsClient, code: str, close_code: int, within: float) -> None:
    """The connection gets the error ``code`` and is then closed with ``close_code``."""
    async with asyncio.timeout(within):
        while True:
            frame = await client.ws.receive()
            if frame.type == aiohttp.WSMsgType.TEXT:
                message = json.loads(frame.data)
                if message["type"] == "error":
                    assert message["code"] == code, message
                    break
            else:
                raise AssertionError(f"closed before the error: {frame.type.name} {frame.data!r}")
        frame = await client.ws.receive()
        while frame.type == aiohttp.WSMsgType.TEXT:
            frame = await client.ws.receive()
    # The close frame's code, as a browser reports it (aiohttp's server closes the
    # transport right after a close made from another task: the client's reply may fail).
    assert frame.type == aiohttp.WSMsgType.CLOSE, frame
    assert frame.data == close_code, frame


async def test_a_link_revoked_from_the_command_line_closes_its_page_and_is_refused_after(
    live_server: RunningServer, open_ws
) -> None:
    # Two links made at once, as two terminals would (the store takes both).
    (token, invitation), (other_token, _) = await asyncio.gather(
        invite(live_server, "--role", "interpreter", "--booth", "ru-fr", "--name", "Anna"),
        invite(live_server, "--role", "interpreter", "--booth", "ru-fr"),
    )
    booth = await welcomed(open_ws, live_server, token)
    partner = await welcomed(open_ws, live_server, other_token)

    result = await dragoman(
        "revoke", invitation, "--data-dir", live_server.settings.data_dir
    )  # fmt: skip
    assert result.status == 0, result.stderr
    assert f"Revoked staff link {invitation}" in result.stdout

    await closed_because(booth, "token_revoked", CLOSE_REVOKED, CLOSED_WITHIN_S)
    again = await open_with(open_ws, live_server, token)
    refusal = await again.next("error")
    assert refusal["code"] == "token_revoked"
    assert "withdrawn by the organizer" in refusal["message"]
    await again.ws.receive()
    assert again.ws.close_code == CLOSE_REVOKED
    # The partner's link is another invitation: untouched.
    await partner.alive()


async def test_revoking_twice_or_an_unknown_id_is_a_clear_error(
    live_server: RunningServer,
) -> None:
    _, invitation = await invite(live_server, "--role", "speaker", "--speaker", "elena-naumova")
    data_dir = live_server.settings.data_dir
    assert (await dragoman("revoke", invitation, "--data-dir", data_dir)).status == 0

    # Both refused, so neither changes what the other finds: run together.
    again, unknown = await asyncio.gather(
        dragoman("revoke", invitation, "--data-dir", data_dir),
        dragoman("revoke", "nosuchid", "--data-dir", data_dir),
    )
    assert again.status == 1
    assert f"staff link {invitation} (a speaker for speaker elena-naumova" in again.stderr
    assert "was already revoked on" in again.stderr
    assert unknown.status == 1
    assert "there is no staff link with id 'nosuchid'" in unknown.stderr
    assert "dragoman invite --list" in unknown.stderr


async def test_invite_list_shows_every_link_with_its_status(live_server: RunningServer) -> None:
    data_dir = live_server.settings.data_dir
    (_, anna), (_, elena) = await asyncio.gather(
        invite(live_server, "--role", "interpreter", "--booth", "ru-fr", "--name", "Anna"),
        invite(live_server, "--role", "speaker", "--speaker", "elena-naumova"),
    )
    await dragoman("revoke", anna, "--data-dir", data_dir)

    # Four commands that only read: run together, as four terminals would.
    table, listed, confused, neither = await asyncio.gather(
        dragoman("invite", "--list", "--data-dir", data_dir),
        dragoman("invite", "--list", "--json", "--data-dir", data_dir),
        dragoman("invite", "--list", "--role", "moderator", "--data-dir", data_dir),
        dragoman("invite", "--data-dir", data_dir),
    )
    assert table.status == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("2 staff links for ")
    assert lines[1].split()[:4] == ["ID", "ROLE", "FOR", "NAME"]
    anna_line = next(line for line in lines if line.startswith(anna))
    assert "interpreter" in anna_line and "ru-fr" in anna_line and "Anna" in anna_line
    assert "revoked 20" in anna_line
    elena_line = next(line for line in lines if line.startswith(elena))
    assert "Elena Naumova" in elena_line and elena_line.rstrip().endswith("active")

    links = {link["id"]: link for link in json.loads(listed.stdout)}
    assert links[anna]["status"] == "revoked" and links[anna]["revoked_at"].endswith("Z")
    assert links[elena]["speaker"] == "elena-naumova" and links[elena]["revoked_at"] is None

    assert confused.status == 1 and "--list shows the links already issued" in confused.stderr
    assert neither.status == 1 and "--role moderator|interpreter|speaker" in neither.stderr


async def test_a_staff_link_lives_through_the_event_day_plus_the_margin(
    live_server: RunningServer,
) -> None:
    event = live_server.event
    result = await dragoman(
        "invite", "--role", "moderator", "--data-dir", live_server.settings.data_dir,
        env=dragoman_env(DRAGOMAN_STAFF_LINK_MARGIN_HOURS="6"),
    )  # fmt: skip
    assert result.status == 0, result.stderr
    claims = live_server.signer.verify(result.stdout.strip().split("?token=", 1)[1])
    midnight_after = datetime.combine(
        event.starts_at_local.date() + timedelta(days=1), datetime.min.time(), tzinfo=event.tz
    )
    expected = max(midnight_after + timedelta(hours=6), datetime.now(UTC) + timedelta(hours=6))
    assert abs((claims.expires_at - expected).total_seconds()) < 120
    assert claims.expires_at < datetime.now(UTC) + timedelta(days=400)


async def test_a_link_whose_invitation_is_unknown_is_refused(
    live_server: RunningServer, open_ws
) -> None:
    token = live_server.signer.issue(
        Role.SPEAKER,
        subject="elena-naumova",
        speaker="elena-naumova",
        invitation="neverissued",
        ttl=timedelta(hours=1),
    )
    client = await open_with(open_ws, live_server, token)
    refusal = await client.next("error")
    assert refusal["code"] == "token_unknown"
    assert "not known to this event" in refusal["message"]


async def test_a_link_issued_before_invitations_were_recorded_still_admits(connect) -> None:
    # The fixture's links carry no invitation id, as links made by an older release.
    interpreter = await connect(Role.INTERPRETER, subject="old-link", booth="ru-fr")
    assert interpreter.welcome is not None
    await interpreter.alive()


async def add_invitation(server: RunningServer, **fields: object) -> tuple[str, str]:
    now = datetime.now(UTC)
    invitation = Invitation(
        id=str(fields.pop("id")),
        event_id=server.event.id,
        issued_at=now,
        expires_at=now + timedelta(hours=2),
        **fields,  # type: ignore[arg-type]
    )
    await server.store.add_invitation(invitation)
    token = server.signer.issue(
        invitation.role,
        subject=invitation.subject,
        booth=invitation.booth,
        speaker=invitation.speaker,
        invitation=invitation.id,
        ttl=timedelta(hours=2),
    )
    return token, invitation.id


async def test_the_studio_lists_the_links_and_revokes_one_everywhere_at_once(
    live_server: RunningServer, open_ws, connect
) -> None:
    anna_token, anna = await add_invitation(
        live_server, id="annalink", role=Role.INTERPRETER, subject="anna", booth="ru-fr",
        name="Anna Petrova",
    )  # fmt: skip
    _, elena = await add_invitation(
        live_server, id="elenalnk", role=Role.SPEAKER, subject="elena-naumova",
        speaker="elena-naumova", name="Elena Naumova",
    )  # fmt: skip
    booth = await welcomed(open_ws, live_server, anna_token)
    studio = await connect(Role.MODERATOR, subject="marie")
    other_studio = await connect(Role.MODERATOR, subject="paul")

    await studio.send("list_links")
    listing = (await studio.next("links"))["links"]
    assert [(link["id"], link["name"], link["status"]) for link in listing] == [
        (anna, "Anna Petrova", "active"),
        (elena, "Elena Naumova", "active"),
    ]
    assert listing[0]["booth"] == "ru-fr" and listing[1]["speaker"] == "elena-naumova"

    await studio.send("revoke_link", link=anna)
    await closed_because(booth, "token_revoked", CLOSE_REVOKED, 5.0)
    for moderator in (studio, other_studio):
        updated = {link["id"]: link for link in (await moderator.next("links"))["links"]}
        assert updated[anna]["status"] == "revoked" and updated[anna]["revoked_at"] is not None
        assert updated[elena]["status"] == "active"

    ref = await studio.send("revoke_link", link=anna)
    assert (await studio.error(ref))["code"] == "already_revoked"
    ref = await studio.send("revoke_link", link="nosuchid")
    assert (await studio.error(ref))["code"] == "unknown_link"
    await studio.alive()


@pytest.mark.parametrize("message", [{"type": "list_links"}, {"type": "revoke_link", "link": "x"}])
async def test_only_the_moderator_sees_or_revokes_links(connect, message) -> None:
    speaker = await connect(Role.SPEAKER, subject="elena-naumova", speaker="elena-naumova")
    fields = {k: v for k, v in message.items() if k != "type"}
    ref = await speaker.send(message["type"], **fields)
    assert (await speaker.error(ref))["code"] == "forbidden"


async def test_a_revoked_speaker_is_cut_at_once_not_after_the_grace_of_a_blink(
    live_server: RunningServer, open_ws, connect, peers
) -> None:
    token, invitation = await add_invitation(
        live_server, id="tokovini", role=Role.SPEAKER, subject=RUSSIAN_SPEAKER,
        speaker=RUSSIAN_SPEAKER,
    )  # fmt: skip
    speaker = await welcomed(open_ws, live_server, token)
    peers.append(await publish(speaker, ToneTrack(1000.0)))
    studio = await connect(Role.MODERATOR, subject="marie")
    await studio.state_where(lambda s: RUSSIAN_SPEAKER in s["publishers"]["speakers"])

    started = time.monotonic()
    await studio.send("revoke_link", link=invitation)
    await studio.state_where(lambda s: RUSSIAN_SPEAKER not in s["publishers"]["speakers"])
    # A page that blinked keeps its media for PUBLISHER_GRACE_S; a revoked one does not.
    assert time.monotonic() - started < PUBLISHER_GRACE_S / 2


async def test_a_revoked_studio_link_opens_no_recordings(start_server) -> None:
    server = await start_server()
    token, invitation = await add_invitation(
        server, id="studiolk", role=Role.MODERATOR, subject="marie"
    )
    async with aiohttp.ClientSession() as http:
        before = await http.get(f"{server.url}/api/recordings", params={"token": token})
        assert before.status == 200
        await server.store.revoke_invitation(invitation)
        after = await http.get(f"{server.url}/api/recordings", params={"token": token})
        assert after.status == 401
        assert (await after.json())["error"]["code"] == "token_revoked"
