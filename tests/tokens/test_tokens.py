"""Signed links: a genuine one admits its holder in its scope; forged, tampered, damaged,
expired or out-of-scope ones are refused with a sentence that says why."""

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from signaling.tokens import (
    MAX_TOKEN_LENGTH,
    Claims,
    ExpiredToken,
    ForgedToken,
    MalformedToken,
    Role,
    ScopeError,
    TokenError,
    TokenSigner,
)

SECRET = b"k" * 32
HOUR = timedelta(hours=1)


class Clock:
    """A clock the test moves by hand (tokens read the time through it)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 6, 21, 10, 0, tzinfo=UTC).timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def signer(clock: Clock) -> TokenSigner:
    return TokenSigner(SECRET, clock=clock)


def test_valid_tokens_carry_role_scope_and_expiry(signer: TokenSigner, clock: Clock) -> None:
    interpreter = signer.issue(Role.INTERPRETER, subject="Мария", booth="ru-fr", ttl=HOUR)
    claims = signer.verify(interpreter)
    assert claims == Claims(
        role=Role.INTERPRETER,
        subject="Мария",
        booth="ru-fr",
        expires_at=datetime.fromtimestamp(clock.now + 3600, UTC),
    )
    assert signer.require(claims, Role.INTERPRETER, booth="ru-fr") is claims

    speaker = signer.verify(
        signer.issue(Role.SPEAKER, subject="andre-samray", speaker="andre-samray", ttl=HOUR)
    )
    assert (speaker.role, speaker.speaker, speaker.booth) == (Role.SPEAKER, "andre-samray", None)
    signer.require(speaker, Role.SPEAKER, speaker="andre-samray")

    attendee = signer.verify(
        signer.issue(Role.ATTENDEE, subject="reg-1", registration="reg-1", ttl=HOUR)
    )
    assert attendee.registration == "reg-1"
    signer.require(attendee, Role.ATTENDEE)

    moderator = signer.verify(signer.issue(Role.MODERATOR, subject="moderator", ttl=HOUR))
    signer.require(moderator, Role.MODERATOR)
    # A moderator may be allowed where a booth is named: booth scope is for interpreters.
    signer.require(moderator, [Role.INTERPRETER, Role.MODERATOR], booth="ru-fr")


def test_token_is_compact_and_url_safe(signer: TokenSigner) -> None:
    token = signer.issue(Role.INTERPRETER, subject="interpreter", booth="ru-fr", ttl=HOUR)
    payload, signature = token.split(".")
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert set(payload) <= allowed and set(signature) <= allowed
    assert len(token) < 200


def test_another_secret_is_a_forgery(signer: TokenSigner) -> None:
    other = TokenSigner(b"o" * 32)
    token = other.issue(Role.MODERATOR, subject="moderator", ttl=HOUR)
    with pytest.raises(ForgedToken, match=r"^this link is not valid \(signature mismatch\)$"):
        signer.verify(token)


def test_forged_signature(signer: TokenSigner) -> None:
    token = signer.issue(Role.ATTENDEE, subject="reg-1", registration="reg-1", ttl=HOUR)
    payload, signature = token.split(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    with pytest.raises(ForgedToken, match="signature mismatch"):
        signer.verify(f"{payload}.{flipped}")


def test_tampered_payload(signer: TokenSigner) -> None:
    """Raising one's own role in the payload breaks the signature."""
    token = signer.issue(Role.ATTENDEE, subject="reg-1", registration="reg-1", ttl=HOUR)
    payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["r"] = "moderator"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(ForgedToken, match="signature mismatch"):
        signer.verify(f"{forged}.{signature}")


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param(None, id="none"),
        pytest.param(12345, id="number"),
        pytest.param("garbage", id="no-dot"),
        pytest.param(".", id="only-dot"),
        pytest.param("abc.", id="no-signature"),
        pytest.param(".abc", id="no-payload"),
        pytest.param("ab c.def", id="space-in-payload"),
        pytest.param("abc.def.ghi", id="three-parts"),
        pytest.param("x" * (MAX_TOKEN_LENGTH + 1), id="oversized"),
    ],
)
def test_garbage_is_malformed(signer: TokenSigner, token: object) -> None:
    with pytest.raises(MalformedToken, match=r"^this link is not valid \("):
        signer.verify(token)


def test_non_ascii_signature_is_refused(signer: TokenSigner) -> None:
    token = signer.issue(Role.MODERATOR, subject="moderator", ttl=HOUR)
    payload = token.split(".")[0]
    with pytest.raises(TokenError, match="not valid"):
        signer.verify(f"{payload}.ключ")


def test_expired(signer: TokenSigner, clock: Clock) -> None:
    token = signer.issue(Role.INTERPRETER, subject="interpreter", booth="ru-fr", ttl=HOUR)
    clock.now += 3599
    signer.verify(token)
    clock.now += 1
    with pytest.raises(ExpiredToken, match=r"^this link has expired \(on 2026-06-21 11:00 UTC\)"):
        signer.verify(token)


def test_wrong_role(signer: TokenSigner) -> None:
    claims = signer.verify(signer.issue(Role.ATTENDEE, subject="reg-1", ttl=HOUR))
    with pytest.raises(ScopeError, match=r"^this link is for an attendee, not for the moderator$"):
        signer.require(claims, Role.MODERATOR)
    with pytest.raises(ScopeError, match="not for an interpreter or the moderator"):
        signer.require(claims, [Role.MODERATOR, Role.INTERPRETER])


def test_wrong_booth(signer: TokenSigner) -> None:
    claims = signer.verify(
        signer.issue(Role.INTERPRETER, subject="interpreter", booth="ru-fr", ttl=HOUR)
    )
    with pytest.raises(ScopeError, match=r"^this link is for booth ru-fr, not en-fr$"):
        signer.require(claims, Role.INTERPRETER, booth="en-fr")


def test_wrong_speaker(signer: TokenSigner) -> None:
    claims = signer.verify(
        signer.issue(Role.SPEAKER, subject="andre-samray", speaker="andre-samray", ttl=HOUR)
    )
    with pytest.raises(
        ScopeError, match=r"^this link is for speaker andre-samray, not francis-bairin$"
    ):
        signer.require(claims, Role.SPEAKER, speaker="francis-bairin")


def test_errors_share_a_base_and_carry_codes() -> None:
    for error, code in [
        (MalformedToken, "token_malformed"),
        (ForgedToken, "token_forged"),
        (ExpiredToken, "token_expired"),
        (ScopeError, "token_scope"),
    ]:
        assert issubclass(error, TokenError)
        assert error.code == code


@pytest.mark.parametrize(
    ("role", "scope"),
    [
        pytest.param(Role.INTERPRETER, {}, id="interpreter-without-booth"),
        pytest.param(Role.SPEAKER, {}, id="speaker-without-slot"),
        pytest.param(Role.MODERATOR, {"booth": "ru-fr"}, id="moderator-with-booth"),
        pytest.param(Role.ATTENDEE, {"speaker": "andre-samray"}, id="attendee-with-slot"),
    ],
)
def test_scope_must_match_the_role_when_issuing(
    signer: TokenSigner, role: Role, scope: dict[str, str]
) -> None:
    with pytest.raises(ValueError):
        signer.issue(role, subject="someone", ttl=HOUR, **scope)


def test_lifetime_and_subject_are_checked_when_issuing(signer: TokenSigner) -> None:
    with pytest.raises(ValueError):
        signer.issue(Role.MODERATOR, subject="moderator", ttl=timedelta(0))
    with pytest.raises(ValueError):
        signer.issue(Role.MODERATOR, subject="", ttl=HOUR)
    with pytest.raises(ValueError):
        signer.issue(Role.MODERATOR, subject="x" * 201, ttl=HOUR)


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        TokenSigner(b"short")
