"""Sending mail: the SMTP server of `DRAGOMAN_SMTP_URL`, and nothing about what is said.

A node sends few mails (a confirmation per registration, a link asked for again, staff
links from the CLI), each awaited by whoever asked, so a failure is reported to that
person rather than lost in a queue. What the mails say is in `signaling.letters`.

URL forms: ``smtps://host[:465]`` (TLS from the first byte), ``smtp://host[:587]``
(STARTTLS, refused if the server does not offer it) and ``smtp+plain://host[:25]`` (no
encryption, for a relay on the same machine); ``user:password@`` before the host logs in
(percent-encode special characters).
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field
from email.errors import MessageError
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

import aiosmtplib

log = logging.getLogger(__name__)

Security = Literal["tls", "starttls", "none"]
_SCHEMES: dict[str, tuple[Security, int]] = {
    "smtps": ("tls", 465),
    "smtp": ("starttls", 587),
    "smtp+plain": ("none", 25),
}
#: An SMTP conversation of a few kilobytes: longer means the server is not answering.
SEND_TIMEOUT_S = 20.0


class MailError(Exception):
    """A mail could not be handed to the SMTP server; `str()` says why, for a log or a
    person, without the password."""


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    security: Security
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_smtp_url(url: str) -> SmtpServer:
    """The server an ``smtp(s)://`` URL names; `ValueError` (without the password) if it
    names none."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError("is not a URL like smtps://user:password@mail.example.org") from None
    if parts.scheme not in _SCHEMES:
        raise ValueError(
            f"should start with smtps:// (TLS), smtp:// (STARTTLS) or smtp+plain:// "
            f"(no encryption), not {parts.scheme[:20]!r}"
        )
    if not parts.hostname:
        raise ValueError("names no host: write e.g. smtps://user:password@mail.example.org")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("takes no path or query: write scheme://[user:password@]host[:port]")
    security, default_port = _SCHEMES[parts.scheme]
    return SmtpServer(
        host=parts.hostname,
        port=port or default_port,
        security=security,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def check_sender(sender: str) -> str:
    """A ``Name <address>`` or an address; `ValueError` saying what is wrong otherwise."""
    _, address = parseaddr(sender)
    local, at, domain = address.rpartition("@")
    if not at or not local or "." not in domain or any(ch.isspace() for ch in address):
        raise ValueError(
            f"{sender[:80]!r} is not a sender: write an address (events@example.org) "
            "or Name <events@example.org>"
        )
    return sender


class Mailer:
    """Hands messages to one SMTP server, a connection per message."""

    def __init__(
        self,
        url: str,
        sender: str,
        *,
        ca_file: Path | None = None,
        timeout_s: float = SEND_TIMEOUT_S,
    ) -> None:
        self.server = parse_smtp_url(url)
        self.sender = check_sender(sender)
        self.timeout_s = timeout_s
        self._tls_context: ssl.SSLContext | None = None
        if self.server.security != "none":
            self._tls_context = ssl.create_default_context(
                cafile=str(ca_file) if ca_file is not None else None
            )

    def new_message(self, to: str, subject: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        # As typed (checked by `signaling.registration`): an address with a non-ASCII
        # local part is valid (RFC 6531) and goes out with SMTPUTF8.
        message["To"] = to
        message["Subject"] = subject
        return message

    async def send(self, message: EmailMessage) -> None:
        server = self.server
        try:
            await aiosmtplib.send(
                message,
                hostname=server.host,
                port=server.port,
                use_tls=server.security == "tls",
                start_tls=True if server.security == "starttls" else False,
                username=server.username,
                password=server.password,
                tls_context=self._tls_context,
                timeout=self.timeout_s,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError, MessageError, ValueError) as exc:
            reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            raise MailError(
                f"the mail server {server.host}:{server.port} did not take the mail: {reason}"
            ) from None
        log.info("mail sent", extra={"mail_subject": str(message["Subject"])})
