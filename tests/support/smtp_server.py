"""A real SMTP server on loopback for the mail tests: aiosmtpd's protocol served by this
event loop (no thread), keeping every message it accepts, parsed.

`await start_smtp_server()` (or the `smtp_server` fixture) listens on 127.0.0.1 on a
free port; `tls_context=` offers STARTTLS and requires it, `implicit_tls=True` makes it
TLS from the first byte. `await server.next_message()` waits for the next mail.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

MAIL_TIMEOUT_S = 20.0


class _Collector:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[Envelope, EmailMessage]] = asyncio.Queue()
        #: Refuse every mail after this many were accepted (a server that gives out).
        self.accept_only: int | None = None
        self.accepted = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.accept_only is not None and self.accepted >= self.accept_only:
            return "554 Transaction failed: quota exceeded"
        self.accepted += 1
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        message = message_from_bytes(content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.queue.put_nowait((envelope, message))
        return "250 Message accepted"


class SmtpServer:
    def __init__(self, server: asyncio.Server, collector: _Collector, port: int) -> None:
        self._server = server
        self._collector = collector
        self.port = port
        self.envelopes: list[Envelope] = []

    async def next_message(self, within_s: float = MAIL_TIMEOUT_S) -> EmailMessage:
        async with asyncio.timeout(within_s):
            envelope, message = await self._collector.queue.get()
        self.envelopes.append(envelope)
        return message

    def accept_only(self, count: int | None) -> None:
        """Refuse mails once `count` more have been accepted (None: accept all)."""
        self._collector.accept_only = None if count is None else self._collector.accepted + count

    def pending(self) -> int:
        return self._collector.queue.qsize()

    async def close(self) -> None:
        self._server.close()
        await self._server.wait_closed()


async def start_smtp_server(
    *, tls_context: ssl.SSLContext | None = None, implicit_tls: bool = False, **smtp: Any
) -> SmtpServer:
    collector = _Collector()

    def protocol() -> SMTP:
        if tls_context is not None and not implicit_tls:
            return SMTP(collector, tls_context=tls_context, require_starttls=True, **smtp)
        return SMTP(collector, **smtp)

    server = await asyncio.get_running_loop().create_server(
        protocol, "127.0.0.1", 0, ssl=tls_context if implicit_tls else None
    )
    port = int(server.sockets[0].getsockname()[1])
    return SmtpServer(server, collector, port)


@pytest.fixture
async def smtp_server() -> AsyncIterator[SmtpServer]:
    server = await start_smtp_server()
    try:
        yield server
    finally:
        await server.close()
