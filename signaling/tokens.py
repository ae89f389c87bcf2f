"""Signed links: who may join the event, as what, and until when.

A token is ``base64url(payload) "." base64url(HMAC-SHA256(key, payload))``: short enough
for a URL, readable by nobody but checkable without any database, so every node holding
the instance secret admits the same people.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

#: Tokens longer than this are refused before any work is done on them.
MAX_TOKEN_LENGTH = 2048
MAX_SUBJECT_LENGTH = 200
_VERSION = 1
# The instance secret may serve other purposes later: tokens sign with their own key.
_KEY_LABEL = b"dragoman token signing key v1"
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+$")


class Role(StrEnum):
    ATTENDEE = "attendee"
    INTERPRETER = "interpreter"
    SPEAKER = "speaker"
    MODERATOR = "moderator"

    @property
    def described(self) -> str:
        """The role as a sentence names it ("an interpreter")."""
        return {
            Role.ATTENDEE: "an attendee",
            Role.INTERPRETER: "an interpreter",
            Role.SPEAKER: "a speaker",
            Role.MODERATOR: "the moderator",
        }[self]


class TokenError(Exception):
    """A link that does not admit its holder; ``str()`` is a sentence for that person and
    ``code`` a stable name for the wire."""

    code = "token_invalid"


class MalformedToken(TokenError):
    code = "token_malformed"


class ForgedToken(TokenError):
    code = "token_forged"


class ExpiredToken(TokenError):
    code = "token_expired"


class RevokedToken(TokenError):
    """A staff link the organizer took back (`dragoman revoke`, or the studio)."""

    code = "token_revoked"


class UnknownInvitation(TokenError):
    """A staff link naming an invitation this event has no record of."""

    code = "token_unknown"


class ScopeError(TokenError):
    """A valid link used for something it does not grant."""

    code = "token_scope"


@dataclass(frozen=True, kw_only=True)
class Claims:
    """What a verified token says about its holder."""

    role: Role
    #: Who holds it: a registration id, a speaker id, a name given at invitation.
    subject: str
    booth: str | None = None
    speaker: str | None = None
    registration: str | None = None
    #: The staff invitation this link was issued as (`signaling.invitations`): what
    #: `dragoman revoke` names. None for attendee links and for staff links issued
    #: before invitations were recorded.
    invitation: str | None = None
    expires_at: datetime


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not _BASE64URL.match(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Issues and verifies tokens with one instance secret."""

    def __init__(self, secret: bytes, *, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("the signing secret must be at least 16 bytes")
        self._key = hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()
        self._clock = clock

    def _sign(self, payload: str) -> str:
        return _b64encode(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())

    def issue(
        self,
        role: Role,
        *,
        subject: str,
        booth: str | None = None,
        speaker: str | None = None,
        registration: str | None = None,
        invitation: str | None = None,
        ttl: timedelta,
    ) -> str:
        role = Role(role)
        if ttl <= timedelta(0):
            raise ValueError("a token's lifetime must be positive")
        if not subject or len(subject) > MAX_SUBJECT_LENGTH:
            raise ValueError(f"the subject must have 1 to {MAX_SUBJECT_LENGTH} characters")
        # The scope belongs to the role: a link never grants a booth to a non-interpreter.
        if (role is Role.INTERPRETER) != (booth is not None):
            raise ValueError("a booth is given exactly for interpreter tokens")
        if (role is Role.SPEAKER) != (speaker is not None):
            raise ValueError("a speaker is given exactly for speaker tokens")
        if role is Role.ATTENDEE and invitation is not None:
            raise ValueError("attendee links are not invitations: their record is the registration")
        claims: dict[str, object] = {
            "v": _VERSION,
            "r": role.value,
            "s": subject,
            "e": int(self._clock() + ttl.total_seconds()),
        }
        for key, value in (("b", booth), ("p", speaker), ("g", registration), ("i", invitation)):
            if value is not None:
                claims[key] = value
        payload = _b64encode(
            json.dumps(claims, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        )
        return f"{payload}.{self._sign(payload)}"

    def verify(self, token: object) -> Claims:
        """The claims of a genuine, unexpired token; else a ``TokenError`` saying why."""
        if not isinstance(token, str) or not token:
            raise MalformedToken("this link is not valid (no access code in it)")
        if len(token) > MAX_TOKEN_LENGTH:
            raise MalformedToken("this link is not valid (the access code is too long)")
        payload, dot, signature = token.strip().partition(".")
        if not dot or not _BASE64URL.match(payload) or not _BASE64URL.match(signature):
            raise MalformedToken("this link is not valid (it is damaged or incomplete)")
        if not hmac.compare_digest(signature.encode("ascii"), self._sign(payload).encode("ascii")):
            raise ForgedToken("this link is not valid (signature mismatch)")
        claims = self._decode(payload)
        if self._clock() >= claims.expires_at.timestamp():
            when = claims.expires_at.strftime("%Y-%m-%d %H:%M UTC")
            raise ExpiredToken(f"this link has expired (on {when}); ask for a new one")
        return claims

    @staticmethod
    def _decode(payload: str) -> Claims:
        # Only reached with a correct signature, so a failure here is our own bug or an
        # old format: still a clear refusal, never a crash.
        try:
            data = json.loads(_b64decode(payload).decode("utf-8"))
            if not isinstance(data, dict) or data.get("v") != _VERSION:
                raise ValueError("unknown token version")
            optional = {key: data.get(key) for key in ("b", "p", "g", "i")}
            if not all(value is None or isinstance(value, str) for value in optional.values()):
                raise ValueError("bad scope")
            if not isinstance(data.get("s"), str) or type(data.get("e")) is not int:
                raise ValueError("bad subject or expiry")
            return Claims(
                role=Role(data["r"]),
                subject=data["s"],
                booth=optional["b"],
                speaker=optional["p"],
                registration=optional["g"],
                invitation=optional["i"],
                expires_at=datetime.fromtimestamp(data["e"], UTC),
            )
        except (ValueError, KeyError, TypeError, binascii.Error, OverflowError):
            raise MalformedToken(
                "this link is not valid (it was made by an incompatible version)"
            ) from None

    @staticmethod
    def require(
        claims: Claims,
        role: Role | Collection[Role],
        booth: str | None = None,
        speaker: str | None = None,
    ) -> Claims:
        """Check that ``claims`` grant ``role`` (or one of several) and, when given, that
        booth or speaker slot; raises ``ScopeError`` saying what the link is for."""
        allowed = {Role(role)} if isinstance(role, str) else {Role(r) for r in role}
        if claims.role not in allowed:
            wanted = " or ".join(sorted(r.described for r in allowed))
            raise ScopeError(f"this link is for {claims.role.described}, not for {wanted}")
        # A booth or slot scopes interpreter and speaker links; a moderator link (when the
        # caller allows it) is not scoped.
        if booth is not None and claims.role is Role.INTERPRETER and claims.booth != booth:
            raise ScopeError(f"this link is for booth {claims.booth}, not {booth}")
        if speaker is not None and claims.role is Role.SPEAKER and claims.speaker != speaker:
            raise ScopeError(f"this link is for speaker {claims.speaker}, not {speaker}")
        return claims
