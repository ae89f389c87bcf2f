"""The booth chat, the withdrawn handover and the relay rule over the real WebSocket.

Partners of a booth read their own thread, the moderator and the booth share another;
nobody else reads either. Oversized, empty, out-of-scope and flooding messages get an error
with a code and a sentence, the connection goes on and nothing already sent is lost; a
restart of the node keeps every thread.
"""

from __future__ import annotations

import pytest

from signaling.booth_chat import CHAT_RATE_LIMIT
from signaling.protocol import CHAT_MAX_CHARS
from signaling.store import SQLITE_FILE_NAME, SqliteStore
from signaling.tokens import Role
from signaling.websocket import install_live

from .conftest import token

pytestmark = pytest.mark.timeout(60)

BOOTH = "booth:ru-fr"
STUDIO = "studio:ru-fr"


def booth(state: dict) -> dict:
    return state["booths"][0]


async def chatter(connect, role: Role, subject: str, **scope):
    """A connection that has read the chat history sent after its first state."""
    client = await connect(role, subject=subject, **scope)
    client.history = await client.next("chat")
    assert client.history["history"] is True
    return client


async def test_partners_and_the_studio_each_read_their_own_thread(connect):
    anna = await chatter(connect, Role.INTERPRETER, "anna", booth="ru-fr")
    boris = await chatter(connect, Role.INTERPRETER, "boris", booth="ru-fr")
    moderator = await chatter(connect, Role.MODERATOR, "mod")
    assert moderator.history["messages"] == []

    await anna.send("chat_send", thread=BOOTH, text="  1948, not 1984  ")
    said = await boris.next("chat")
    assert said["history"] is False
    [message] = said["messages"]
    assert (message["thread"], message["seq"], message["sender"], message["role"]) == (
        BOOTH,
        1,
        "anna",
        "interpreter",
    )
    assert message["text"] == "1948, not 1984"
    assert (await anna.next("chat"))["messages"] == [message]

    await moderator.send("chat_send", thread=STUDIO, text="Slide 12 is next")
    to_booth = await moderator.next("chat")
    # The moderator's own message comes back to him: the first chat he receives is this
    # one, so the partners' thread never reached him.
    assert [m["thread"] for m in to_booth["messages"]] == [STUDIO]
    for partner in (anna, boris):
        assert (await partner.next("chat"))["messages"][0]["text"] == "Slide 12 is next"

    # A page that connects later gets the history of the threads it may read.
    late = await chatter(connect, Role.INTERPRETER, "boris", booth="ru-fr")
    history = late.history
    assert [(m["thread"], m["text"]) for m in history["messages"]] == [
        (BOOTH, "1948, not 1984"),
        (STUDIO, "Slide 12 is next"),
    ]
    moderator_again = await chatter(connect, Role.MODERATOR, "mod")
    history = moderator_again.history
    assert [m["thread"] for m in history["messages"]] == [STUDIO]


async def test_bad_chat_messages_are_refused_and_lose_nothing(connect):
    anna = await chatter(connect, Role.INTERPRETER, "anna", booth="ru-fr")
    boris = await chatter(connect, Role.INTERPRETER, "boris", booth="ru-fr")
    attendee = await connect(Role.ATTENDEE, subject="reg-1")

    ref = await anna.send("chat_send", thread=BOOTH, text="я" * (CHAT_MAX_CHARS + 1))
    error = await anna.error(ref)
    assert error["code"] == "chat_too_long"
    assert f"at most {CHAT_MAX_CHARS} characters" in error["message"]
    assert f"has {CHAT_MAX_CHARS + 1}" in error["message"]

    ref = await anna.send("chat_send", thread=BOOTH, text=" \n\t ")
    assert (await anna.error(ref))["code"] == "chat_empty"
    ref = await anna.send("chat_send", thread="booth:other", text="hi")
    error = await anna.error(ref)
    assert error["code"] == "out_of_scope" and "booth:ru-fr" in error["message"]
    ref = await anna.send("chat_send", thread=BOOTH)
    assert (await anna.error(ref))["code"] == "invalid"
    ref = await attendee.send("chat_send", thread=BOOTH, text="hello")
    assert (await attendee.error(ref))["code"] == "forbidden"

    # Exactly the limit passes, the next one is refused; the connection goes on.
    await anna.send("chat_send", thread=BOOTH, text="x" * CHAT_MAX_CHARS)
    for n in range(1, CHAT_RATE_LIMIT):
        await anna.send("chat_send", thread=BOOTH, text=f"flood {n}")
    ref = await anna.send("chat_send", thread=BOOTH, text="one too many")
    error = await anna.error(ref)
    assert error["code"] == "chat_too_fast"
    assert "wait a few seconds" in error["message"]
    await anna.alive()

    # The partner got every accepted message, in order, and nothing refused.
    texts = []
    while len(texts) < CHAT_RATE_LIMIT:
        texts += [m["text"] for m in (await boris.next("chat"))["messages"]]
    assert texts == ["x" * CHAT_MAX_CHARS] + [f"flood {n}" for n in range(1, CHAT_RATE_LIMIT)]


async def test_the_chat_survives_a_restart_of_the_node(start_server, open_ws):
    first = await start_server(extensions=[install_live])

    async def connect_to(server, role, subject, **scope):
        client = await open_ws(server)
        await client.send("auth", v=1, token=token(server, role, subject, **scope))
        await client.next("welcome")
        return client

    anna = await connect_to(first, Role.INTERPRETER, "anna", booth="ru-fr")
    await anna.send("chat_send", thread=STUDIO, text="<b>mic check</b>")
    await anna.next("chat")
    await anna.close()
    await first.stop()

    store = SqliteStore(first.settings.data_dir / SQLITE_FILE_NAME)
    again = await start_server(extensions=[install_live], store=store)
    moderator = await connect_to(again, Role.MODERATOR, "mod")
    history = await moderator.next("chat")
    assert [(m["sender"], m["text"]) for m in history["messages"]] == [("anna", "<b>mic check</b>")]
    await moderator.close()
    await store.close()


async def test_a_handover_request_can_be_withdrawn(connect):
    anna = await connect(Role.INTERPRETER, subject="anna", booth="ru-fr")
    boris = await connect(Role.INTERPRETER, subject="boris", booth="ru-fr")
    await anna.send("mic", on=True)
    await boris.state_where(lambda s: booth(s)["on_air"] == "anna")

    ref = await boris.send("withdraw_handover")
    error = await boris.error(ref)
    assert error["code"] == "no_handover_requested"
    assert "nothing to withdraw" in error["message"]

    await boris.send("request_handover")
    await anna.state_where(lambda s: booth(s)["handover"] is not None)
    ref = await anna.send("withdraw_handover")
    assert (await anna.error(ref))["code"] == "no_handover_requested"
    await boris.send("withdraw_handover")
    state = await anna.state_where(lambda s: booth(s)["handover"] is None)
    assert booth(state)["on_air"] == "anna"
    ref = await anna.send("accept_handover")
    assert (await anna.error(ref))["code"] == "no_handover_requested"


async def test_the_interpreter_on_air_cannot_relay_from_his_own_channel(connect):
    anna = await connect(Role.INTERPRETER, subject="anna", booth="ru-fr")
    boris = await connect(Role.INTERPRETER, subject="boris", booth="ru-fr")
    await anna.send("mic", on=True)
    # Forced into Russian: the booth's own channel is ru.
    await anna.send("set_direction", into="ru")
    state = await anna.state_where(lambda s: booth(s)["direction_override"] == "ru")
    assert state["you"]["listen_loops"] == ["ru"]

    ref = await anna.send("listen", source="ru")
    error = await anna.error(ref)
    assert error["code"] == "relay_loop"
    assert "your own channel" in error["message"]
    assert (await anna.state_where(lambda s: True))["you"]["listen"] == "floor"

    # Off air, Boris may monitor his partner on the booth's channel...
    await boris.send("listen", source="ru")
    state = await boris.state_where(lambda s: s["you"]["listen"] == "ru")
    assert state["you"]["listen_loops"] == ["ru"]
    # ...and does not hear himself once he is on air: his slot goes back to the default.
    await boris.send("request_handover")
    await anna.state_where(lambda s: booth(s)["handover"] is not None)
    await anna.send("accept_handover")
    state = await boris.state_where(lambda s: booth(s)["on_air"] == "boris")
    assert state["you"]["listen"] == "floor"

    await boris.send("listen", source="fr")
    state = await boris.state_where(lambda s: s["you"]["listen"] == "fr")
    assert state["you"]["listen_relayed_from"] == []
    # The booth turns into French: the choice of French now loops, so it is not heard.
    await boris.send("set_direction", into="fr")
    state = await boris.state_where(lambda s: booth(s)["direction_override"] == "fr")
    assert state["you"]["listen_loops"] == ["fr"]
    assert state["you"]["listen"] == "floor"
