"""The booth chat: notes between the partners of a booth, and between a booth and the studio.

Interpreters on air cannot speak to each other or to the moderator: a written line ("the
speaker said 1948, not 1984", "slide 12 is up next") is how a booth works. Each booth has
two threads:

- ``booth:<booth_id>``: the interpreters of that booth only;
- ``studio:<booth_id>``: the interpreters of that booth and the moderator.

Messages are kept in the store (a restart keeps them) and numbered per thread; the pages
count what they have not read yet. A message is at most `CHAT_MAX_CHARS` characters, and a
sender may send `CHAT_RATE_LIMIT` messages per `CHAT_RATE_WINDOW_S` seconds (counted in the
store, so on every node): a stuck key cannot flood a partner's screen. Refusals are
`ChatRefused` with the protocol code and a sentence; nothing already sent is lost.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from signaling import protocol as p
from signaling.protocol import CHAT_MAX_CHARS
from signaling.tokens import Claims, Role

if TYPE_CHECKING:
    from signaling.store import Store

CHAT_RATE_LIMIT = 10
CHAT_RATE_WINDOW_S = 10.0
#: How many messages of each thread a page gets when it connects.
CHAT_HISTORY = 200

BOOTH_THREAD = "booth"
STUDIO_THREAD = "studio"


@dataclass(frozen=True)
class ChatEntry:
    """One stored chat message."""

    thread: str
    seq: int
    at: float
    sender: str
    role: str
    text: str


class ChatRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def booth_thread(booth_id: str) -> str:
    return f"{BOOTH_THREAD}:{booth_id}"


def studio_thread(booth_id: str) -> str:
    return f"{STUDIO_THREAD}:{booth_id}"


def readable_threads(claims: Claims, booth_ids: Iterable[str]) -> list[str]:
    """The threads a connection may read and write."""
    if claims.role is Role.INTERPRETER and claims.booth is not None:
        return [booth_thread(claims.booth), studio_thread(claims.booth)]
    if claims.role is Role.MODERATOR:
        return [studio_thread(b) for b in booth_ids]
    return []


def clean_text(text: str) -> str:
    """The text as it is kept: trimmed, control characters other than new lines dropped."""
    kept = "".join(c for c in text if c == "\n" or c == "\t" or (c >= " " and c != "\x7f"))
    return kept.strip()


class BoothChat:
    """The chat of one event: checks, keeps and numbers messages (delivery is the caller's)."""

    def __init__(self, event_id: str, booth_ids: Iterable[str], store: Store) -> None:
        self.event_id = event_id
        self.booth_ids = list(booth_ids)
        self.store = store

    def threads_for(self, claims: Claims) -> list[str]:
        return readable_threads(claims, self.booth_ids)

    async def history(self, claims: Claims) -> list[ChatEntry]:
        entries: list[ChatEntry] = []
        for thread in self.threads_for(claims):
            entries.extend(await self.store.chat_messages(self.event_id, thread, CHAT_HISTORY))
        return entries

    async def send(self, claims: Claims, thread: str, text: str) -> ChatEntry:
        """Keep one message; raises `ChatRefused` when it may not be sent."""
        if thread not in self.threads_for(claims):
            known = ", ".join(self.threads_for(claims)) or "none"
            raise ChatRefused(
                "out_of_scope",
                f"you cannot write in chat thread {thread[:80]!r} (yours: {known})",
            )
        text = clean_text(text)
        if not text:
            raise ChatRefused("chat_empty", "the message is empty: write something first")
        if len(text) > CHAT_MAX_CHARS:
            raise ChatRefused(
                "chat_too_long",
                f"a chat message holds at most {CHAT_MAX_CHARS} characters and this one has "
                f"{len(text)}: shorten it or send it in parts",
            )
        key = f"chat:{self.event_id}:{claims.role.value}:{claims.subject}"
        if not await self.store.hit_rate_limit(key, CHAT_RATE_LIMIT, CHAT_RATE_WINDOW_S):
            raise ChatRefused(
                "chat_too_fast",
                f"you have sent {CHAT_RATE_LIMIT} messages in the last "
                f"{CHAT_RATE_WINDOW_S:.0f} seconds: wait a few seconds, then send this one again",
            )
        return await self.store.add_chat_message(
            self.event_id, thread, claims.subject, claims.role.value, text
        )


def wire_messages(entries: Iterable[ChatEntry]) -> list[p.ChatMessage]:
    return [
        p.ChatMessage(
            thread=e.thread, seq=e.seq, at=e.at, sender=e.sender, role=Role(e.role), text=e.text
        )
        for e in entries
    ]
