"""Role commands over the real WebSocket, checked through the states the server pushes.

No media here (see test_live_media.py): booth turns, the moderator's session commands,
what each role's ``you`` says, and where the attendee's first channel comes from.
"""

from __future__ import annotations

import pytest

from signaling.registration import NewRegistration
from signaling.tokens import Role
from signaling.websocket import LIVE_KEY, install_live

from .conftest import token

pytestmark = pytest.mark.timeout(60)


def booth(state: dict) -> dict:
    return state["booths"][0]


async def test_booth_turns_are_seen_by_both_interpreters(connect):
    anna = await connect(Role.INTERPRETER, subject="anna", booth="ru-fr")
    boris = await connect(Role.INTERPRETER, subject="boris", booth="ru-fr")
    state = await anna.state_where(lambda s: len(booth(s)["interpreters"]) == 2)
    assert [i["id"] for i in booth(state)["interpreters"]] == ["anna", "boris"]

    await anna.send("mic", on=True)
    state = await boris.state_where(lambda s: booth(s)["on_air"] == "anna")
    assert state["you"]["on_air"] is False
    assert state["you"]["may_take_over"] is False

    ref = await boris.send("mic", on=True)
    error = await boris.error(ref)
    assert error["code"] == "partner_on_air"
    assert "anna is on air" in error["message"]

    ref = await boris.send("take_over")
    assert (await boris.error(ref))["code"] == "take_over_refused"

    ref = await boris.send("cough", on=True)
    assert (await boris.error(ref))["code"] == "not_on_air"

    await boris.send("request_handover")
    state = await anna.state_where(lambda s: booth(s)["handover"] is not None)
    handover = booth(state)["handover"]
    assert handover["by"] == "boris"
    assert handover["take_over_at"] == pytest.approx(handover["at"] + 10)

    ref = await boris.send("request_handover")
    assert (await boris.error(ref))["code"] == "handover_pending"

    await anna.send("accept_handover")
    state = await anna.state_where(lambda s: booth(s)["on_air"] == "boris")
    assert state["you"]["on_air"] is False
    assert booth(state)["handover"] is None

    ref = await anna.send("accept_handover")
    assert (await anna.error(ref))["code"] == "not_on_air"


async def test_take_over_when_the_partner_does_not_answer(connect, live_server):
    live_server.app[LIVE_KEY].booths["ru-fr"].take_over_after = 0.3
    anna = await connect(Role.INTERPRETER, subject="anna", booth="ru-fr")
    boris = await connect(Role.INTERPRETER, subject="boris", booth="ru-fr")
    await anna.send("mic", on=True)
    await boris.state_where(lambda s: booth(s)["on_air"] == "anna")
    await boris.send("request_handover")
    # the server pushes a state by itself when the request turns into a right
    await boris.state_where(lambda s: s["you"]["may_take_over"])
    await boris.send("take_over")
    state = await anna.state_where(lambda s: booth(s)["on_air"] == "boris")
    assert booth(state)["on_air_connected"] is True


async def test_take_over_at_once_when_the_partner_dropped(connect):
    anna = await connect(Role.INTERPRETER, subject="anna", booth="ru-fr")
    boris = await connect(Role.INTERPRETER, subject="boris", booth="ru-fr")
    await anna.send("mic", on=True)
    await boris.state_where(lambda s: booth(s)["on_air"] == "anna")
    await anna.close()
    state = await boris.state_where(lambda s: not booth(s)["on_air_connected"])
    assert booth(state)["on_air"] == "anna"  # still on air: she may come back
    assert state["you"]["may_take_over"] is True
    await boris.send("take_over")
    await boris.state_where(lambda s: booth(s)["on_air"] == "boris")


async def test_listening_and_direction(connect):
    anna = await connect(Role.INTERPRETER, subject="anna", booth="ru-fr")
    assert anna.state["you"]["listen"] == "floor"
    assert booth(anna.state)["listen_default"] == "floor"

    await anna.send("listen", source="ru")
    state = await anna.state_where(lambda s: s["you"]["listen"] == "ru")
    assert booth(state)["interpreters"][0]["listen"] == "ru"
    ref = await anna.send("listen", source="de")
    error = await anna.error(ref)
    assert error["code"] == "unknown_language"
    assert "floor, ru, fr" in error["message"]
    await anna.send("listen", source=None)
    await anna.state_where(lambda s: s["you"]["listen"] == "floor")

    await anna.send("set_direction", into="ru")
    state = await anna.state_where(lambda s: booth(s)["direction_override"] == "ru")
    assert booth(state)["direction"] == {"source": "fr", "into": "ru"}
    # nobody on the floor: nothing to relay, the default stays the floor
    assert state["you"]["listen"] == "floor"
    ref = await anna.send("set_direction", into="de")
    assert (await anna.error(ref))["code"] == "direction_refused"
    await anna.send("set_direction", into=None)
    await anna.state_where(lambda s: booth(s)["direction_override"] is None)


async def test_moderator_runs_the_sessions(connect):
    moderator = await connect(Role.MODERATOR)
    attendee = await connect(Role.ATTENDEE)
    assert moderator.state["you"] is None
    await moderator.send("start_session", session_id="session-2")
    await attendee.state_where(lambda s: s["session"] == "session-2")
    await moderator.send("take_off_air")
    await moderator.send("end_session")
    state = await attendee.state_where(lambda s: s["session"] is None)
    assert state["on_air"] is None
    assert set(state["channels"]) == {"ru", "fr"}
    assert {c["reason"] for c in state["channels"].values()} == {"no_speaker"}


async def test_nobody_on_air_yet(connect):
    attendee = await connect(Role.ATTENDEE)
    state = attendee.state
    assert state["session"] is None
    assert state["on_air"] is None
    assert state["listeners"] == {"original": 0, "ru": 0, "fr": 0}
    assert state["publishers"] == {"speakers": [], "interpreters": {"ru-fr": []}}
    assert booth(state)["on_air"] is None
    assert booth(state)["direction"] is None


async def test_speaker_sees_himself(connect):
    speaker = await connect(Role.SPEAKER, subject="andre-samray", speaker="andre-samray")
    assert speaker.state["you"] == {
        "speaker": "andre-samray",
        "on_air": False,
        "publishing": False,
    }


async def test_the_moderator_receives_the_program_the_floor_and_every_preview(connect):
    moderator = await connect(Role.MODERATOR)
    await moderator.send("subscribe")
    offer = await moderator.next("offer")
    names = [slot["name"] for slot in offer["slots"]]
    assert names[:2] == ["video", "listen"]
    assert "preview:andre-samray" in names
    assert len(names) == 2 + 13
    assert len({slot["mid"] for slot in offer["slots"]}) == len(names)


async def test_an_interpreter_receives_video_and_what_he_listens_to(connect):
    anna = await connect(Role.INTERPRETER, subject="anna", booth="ru-fr")
    await anna.send("subscribe")
    offer = await anna.next("offer")
    slots = {slot["name"]: (slot["kind"], slot["output"]) for slot in offer["slots"]}
    assert slots == {"video": ("video", "program-video"), "listen": ("audio", "floor")}


async def test_an_attendee_starts_on_the_language_he_registered_with(connect, live_server):
    registration, _ = await live_server.store.register(
        NewRegistration(
            event_id=live_server.event.id, name="Мария", email="maria@example.org", language="ru"
        )
    )
    attendee = await connect(Role.ATTENDEE, subject=registration.id, registration=registration.id)
    assert attendee.state["you"]["channel"] == "ru"
    await attendee.send("subscribe")
    offer = await attendee.next("offer")
    assert offer["slots"][0] == {
        "name": "channel",
        "kind": "audio",
        "output": "channel:ru",
        "mid": offer["slots"][0]["mid"],
    }


async def test_two_tabs_of_one_link_follow_the_same_choice(connect):
    first = await connect(Role.ATTENDEE, subject="reg-9")
    second = await connect(Role.ATTENDEE, subject="reg-9")
    await first.send("select_channel", language="fr")
    await second.state_where(lambda s: s["you"]["channel"] == "fr")


async def test_metrics_count_clients_and_listeners(connect, live_server, ws_session):
    clients = [  # held: a client nobody holds is closed
        await connect(Role.ATTENDEE),
        await connect(Role.INTERPRETER, subject="anna", booth="ru-fr"),
    ]
    async with ws_session.get(f"{live_server.url}/metrics") as response:
        text = await response.text()
    assert 'dragoman_live_clients{role="attendee"} 1' in text
    assert 'dragoman_live_clients{role="interpreter"} 1' in text
    assert 'dragoman_live_listeners{channel="fr"} 0' in text
    for client in clients:
        await client.close()


async def test_welcome_hands_the_nodes_ice_servers_to_the_browser(start_server, open_ws):
    servers = (
        '["stun:stun.example.test:3478", {"urls": "turn:turn.example.test:3478?transport=tcp",'
        ' "username": "event", "credential": "for-every-page"}]'
    )
    server = await start_server(extensions=[install_live], ice_servers=servers)
    client = await open_ws(server)
    await client.send("auth", v=1, token=token(server, Role.ATTENDEE, "reg-ice"))
    welcome = await client.next("welcome")
    # Exactly what RTCPeerConnection takes: no username or credential where there is none.
    assert welcome["ice_servers"] == [
        {"urls": ["stun:stun.example.test:3478"]},
        {
            "urls": ["turn:turn.example.test:3478?transport=tcp"],
            "username": "event",
            "credential": "for-every-page",
        },
    ]
    await client.close()


async def test_welcome_names_no_ice_server_by_default(connect):
    client = await connect(Role.ATTENDEE, "reg-no-ice")
    assert client.welcome["ice_servers"] == []
    await client.close()
