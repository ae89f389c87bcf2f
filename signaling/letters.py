"""What the mails say: the registration confirmation (or a link asked for again) and a
staff member's link, in the UI language of whoever asked, with the start time in the
reader's own time zone and the event as a calendar entry.

Sending them is `signaling.mail`'s business; this module only writes them.
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from signaling.calendar_entry import event_ics
from signaling.event_page import format_wall_time
from signaling.i18n import SUPPORTED_LANGUAGES, translate
from signaling.mail import Mailer
from signaling.program import Event
from signaling.tokens import Role


def reader_zone(event: Event, timezone: str | None) -> ZoneInfo:
    """The reader's IANA zone when the browser told it and it exists, else the venue's."""
    if timezone:
        try:
            return ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return event.tz


def ui_language(code: str | None) -> str:
    """A UI language for a reader known only by a language code (e.g. his channel)."""
    primary = (code or "").split("-", 1)[0].lower()
    return primary if primary in SUPPORTED_LANGUAGES else "en"


def start_in_zone(ui_lang: str, event: Event, zone: ZoneInfo) -> str:
    local = event.starts_at_utc.astimezone(zone)
    return translate(ui_lang, "mail.starts", time=format_wall_time(ui_lang, local), zone=zone.key)


def registration_letter(
    mailer: Mailer,
    *,
    ui_lang: str,
    event: Event,
    public_url: str,
    name: str,
    email: str,
    link: str,
    timezone: str | None = None,
    again: bool = False,
) -> EmailMessage:
    """The confirmation of a registration (or, `again`, the link asked for again), with
    the event's calendar entry attached."""
    title = event.title.get(ui_lang)
    zone = reader_zone(event, timezone)
    lines = [
        translate(ui_lang, "mail.greeting", name=name),
        "",
        translate(ui_lang, "mail.again" if again else "mail.registered", title=title),
        start_in_zone(ui_lang, event, zone),
        "",
        translate(ui_lang, "mail.link_intro"),
        link,
        "",
        translate(ui_lang, "mail.open_before"),
        translate(ui_lang, "mail.calendar"),
        "",
        f"— {event.organizer.get(ui_lang)}",
        f"{public_url}/",
    ]
    message = mailer.new_message(email, translate(ui_lang, "mail.subject", title=title))
    message["Content-Language"] = ui_lang
    message.set_content("\n".join(lines))
    ics = event_ics(
        event,
        ui_lang,
        public_url=public_url,
        link=link,
        description=translate(ui_lang, "mail.calendar_description", link=link),
    )
    message.add_attachment(
        ics.encode("utf-8"),
        maintype="text",
        subtype="calendar",
        filename="event.ics",
        params={"method": "PUBLISH", "charset": "utf-8"},
    )
    return message


def staff_letter(
    mailer: Mailer,
    *,
    ui_lang: str,
    event: Event,
    role: Role,
    email: str,
    link: str,
    expires: datetime,
) -> EmailMessage:
    """A moderator's, interpreter's or speaker's link, for him only."""
    title = event.title.get(ui_lang)
    role_name = translate(ui_lang, f"mail.role.{role.value}")
    lines = [
        translate(ui_lang, "mail.staff_intro", role=role_name, title=title),
        "",
        link,
        "",
        translate(
            ui_lang,
            "mail.staff_valid",
            time=format_wall_time(ui_lang, expires.astimezone(event.tz)),
            zone=event.timezone,
        ),
        start_in_zone(ui_lang, event, event.tz),
        "",
        f"— {event.organizer.get(ui_lang)}",
    ]
    message = mailer.new_message(
        email, translate(ui_lang, "mail.staff_subject", role=role_name, title=title)
    )
    message["Content-Language"] = ui_lang
    message.set_content("\n".join(lines))
    return message
