"""The event as a calendar entry (iCalendar, RFC 5545): attached to the confirmation mail
and offered for download on the confirmation page, so that people find the event in their
calendar with their link in it.

Written by hand (a few lines of text): escaping and line folding are the only rules that
matter for a single event. The program gives a start and no end, so the entry has none.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

from signaling.program import Event

PRODUCT_ID = "-//Dragoman//Dragoman//EN"
#: Content lines are folded at 75 octets (RFC 5545, 3.1).
_LINE_OCTETS = 75


def _escape(text: str) -> str:
    return (
        text.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def _fold(line: str) -> str:
    """Fold a content line at 75 octets without cutting a UTF-8 character in two."""
    pieces: list[str] = []
    current = ""
    limit = _LINE_OCTETS
    for char in line:
        if len((current + char).encode("utf-8")) > limit:
            pieces.append(current)
            current = char
            limit = _LINE_OCTETS - 1  # continuation lines start with a space
        else:
            current += char
    pieces.append(current)
    return "\r\n ".join(pieces)


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def event_ics(
    event: Event,
    ui_lang: str,
    *,
    public_url: str,
    link: str | None = None,
    description: str = "",
    now: datetime | None = None,
) -> str:
    """One VEVENT for `event` in the UI language `ui_lang`; `link` (a personal link)
    becomes its location and URL, else the event page."""
    host = urlsplit(public_url).hostname or "dragoman"
    url = link or f"{public_url}/"
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODUCT_ID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "BEGIN:VEVENT",
        f"UID:{_escape(event.id)}@{_escape(host)}",
        f"DTSTAMP:{_utc(now or datetime.now(UTC))}",
        f"DTSTART:{_utc(event.starts_at_utc)}",
        f"SUMMARY:{_escape(event.title.get(ui_lang))}",
        f"LOCATION:{_escape(url)}",
        f"URL:{url}",
        f"DESCRIPTION:{_escape(description or url)}",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return "".join(_fold(line) + "\r\n" for line in lines)
