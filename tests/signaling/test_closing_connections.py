"""A node whose pages are connected stops at once, and a closing connection does not
linger.

When a node stops, every connection closes while the last ones to leave still push states
to the others; a connection's writer that sees its socket closed ends without writing. The
handler's last step (wait for the writer to drain) must see that end, not wait out its two
seconds for every connection: shutdown and every test's teardown took that long.
"""

from __future__ import annotations

import time

from signaling.tokens import Role
from tests.signaling.media_peers import RUSSIAN_SPEAKER

#: The wait the writer ending used to miss is 2 s per connection: well below it, and
#: generous for a loaded machine (a node with a few pages stops in milliseconds).
STOPS_WITHIN_S = 1.5


async def test_a_node_with_pages_connected_stops_at_once(live_server, connect, peers):
    moderator = await connect(Role.MODERATOR)
    interpreter = await connect(Role.INTERPRETER, subject="anna", booth="ru-fr")
    speaker = await connect(Role.SPEAKER, subject=RUSSIAN_SPEAKER, speaker=RUSSIAN_SPEAKER)
    attendee = await connect(Role.ATTENDEE, subject="reg-1")
    peers.extend([moderator, interpreter, speaker, attendee])
    await moderator.state_where(
        lambda s: any(i["id"] == "anna" and i["connected"] for i in s["booths"][0]["interpreters"])
    )

    started = time.monotonic()
    await live_server.stop()
    took = time.monotonic() - started
    assert took < STOPS_WITHIN_S, f"the node took {took:.2f} s to stop"
