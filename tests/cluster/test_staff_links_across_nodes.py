"""A staff link revoked on one node is refused and closed on every node (a real
redis-server holds the store and the live bus)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from signaling.invitations import Invitation
from signaling.live.clients import CLOSE_REVOKED
from signaling.tokens import Role
from signaling.websocket import install_live
from tests.signaling.test_staff_links import closed_because, open_with, welcomed
from tests.support.server import dragoman

SECRET = "cluster-secret-" + "x" * 24


async def two_nodes(start_server: Any, redis_url: str) -> list[Any]:
    return [
        await start_server(extensions=[install_live], redis_url=redis_url, secret=SECRET)
        for _ in range(2)
    ]


async def interpreter_link(node: Any, invitation_id: str) -> str:
    return await staff_link(node, invitation_id, Role.INTERPRETER, "anna", booth="ru-fr")


async def staff_link(
    node: Any, invitation_id: str, role: Role, subject: str, *, booth: str | None = None
) -> str:
    now = datetime.now(UTC)
    await node.store.add_invitation(
        Invitation(
            id=invitation_id,
            event_id=node.event.id,
            role=role,
            subject=subject,
            booth=booth,
            name=subject.title(),
            issued_at=now,
            expires_at=now + timedelta(hours=2),
        )
    )
    return node.signer.issue(
        role, subject=subject, booth=booth, invitation=invitation_id, ttl=timedelta(hours=2)
    )


async def test_revoked_in_the_studio_of_one_node_closes_the_page_on_another(
    start_server, redis_url, connect, open_ws
) -> None:
    a, b = await two_nodes(start_server, redis_url)
    link = await interpreter_link(a, "annaxyz2")
    booth_on_b = await welcomed(open_ws, b, link)
    studio_on_a = await connect(Role.MODERATOR, subject="marie", server=a)

    await studio_on_a.send("revoke_link", link="annaxyz2")

    # Carried by the bus, not by the once-a-second poll of the store: well within it.
    await closed_because(booth_on_b, "token_revoked", CLOSE_REVOKED, 3.0)
    for node in (a, b):
        again = await open_with(open_ws, node, link)
        assert (await again.next("error"))["code"] == "token_revoked"


async def test_revoked_from_the_command_line_closes_the_pages_on_every_node(
    start_server, redis_url, open_ws
) -> None:
    a, b = await two_nodes(start_server, redis_url)
    # A studio link, which may be open on several pages (an interpreter's is one page
    # on all the nodes: tests/cluster/test_seats_across_nodes.py).
    link = await staff_link(a, "marexyz3", Role.MODERATOR, "marie")
    pages = [await welcomed(open_ws, node, link) for node in (a, b)]

    result = await dragoman(
        "revoke", "marexyz3", "--redis-url", redis_url, "--data-dir", a.settings.data_dir
    )
    assert result.status == 0, result.stderr

    for page in pages:
        await closed_because(page, "token_revoked", CLOSE_REVOKED, 8.0)
