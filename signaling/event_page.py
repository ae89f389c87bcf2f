"""The event page as a person, a search engine or a link preview reads it: rendered here.

`GET /` answers with the whole program in the HTML (title, date, venue, languages,
sessions and speakers) and the `<title>` and Open Graph tags of the event, so the page
works without script and a shared link shows the event, not the product's name. The
page's script (`static/index.js`) only adds the start time in the visitor's own zone.

Language names follow how people meet them: in a sentence ("Speaks Russian", "Parle
russe") they are in the page's language (`language.<code>` in the catalogs, the
program's own name for a language the catalogs do not know); where a person picks one
(a menu, a form), they stay in their own name, as the program gives them.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import datetime

from aiohttp import web

from signaling import appkeys
from signaling.i18n import catalog, language_of, translate
from signaling.pages import render_page
from signaling.program import Event, Speaker


def language_in(ui_lang: str, event: Event, code: str) -> str:
    """The name of the event's language `code` as the page's language says it in a
    sentence ("Russian", "russe", "русский"); its own name when the catalogs lack it."""
    primary = code.split("-", 1)[0].lower()
    known = catalog(ui_lang).get(f"language.{primary}")
    if known:
        return known
    return next((item.name for item in event.languages if item.code == code), code)


def format_wall_time(ui_lang: str, moment: datetime) -> str:
    """'21 June 2027, 14:00' in the page's language (no locale database needed)."""
    month = translate(ui_lang, f"month.{moment.month}")
    return translate(
        ui_lang,
        "date.format",
        day=moment.day,
        month=month,
        year=moment.year,
        time=f"{moment:%H:%M}",
    )


def when_text(ui_lang: str, event: Event) -> str:
    """The start in the venue's zone: '21 June 2027, 14:00 (Europe/Brussels time)'."""
    return translate(
        ui_lang,
        "event.event_time",
        time=format_wall_time(ui_lang, event.starts_at_local),
        zone=event.timezone,
    )


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _speaker(ui_lang: str, event: Event, speaker: Speaker) -> str:
    native = (
        f'<span class="speaker-native" lang="{_e(speaker.language)}"> ({_e(speaker.name_native)})'
        "</span>"
        if speaker.name_native and speaker.name_native != speaker.name
        else ""
    )
    speaks = translate(
        ui_lang, "event.speaks", language=language_in(ui_lang, event, speaker.language)
    )
    return (
        f'<li class="speaker" data-speaker="{_e(speaker.id)}">'
        f'<span class="speaker-name">{_e(speaker.name)}</span>{native}'
        f'<span class="speaker-affiliation">{_e(speaker.affiliation.get(ui_lang))}</span>'
        f'<span class="speaker-language" data-language="{_e(speaker.language)}">{_e(speaks)}</span>'
        "</li>"
    )


def _list(items: Iterable[str]) -> str:
    return "".join(items)


def interpretation_line(ui_lang: str, event: Event) -> str | None:
    pairs = [
        " ⇄ ".join(language_in(ui_lang, event, code) for code in booth.works_into)
        for booth in event.booths
        if not booth.sign
    ]
    if not pairs:
        return None
    return translate(ui_lang, "event.interpretation", languages=", ".join(pairs))


def event_body(ui_lang: str, event: Event) -> str:
    """The event's main content, escaped HTML."""
    title = event.title.get(ui_lang)
    supporters = [item.get(ui_lang) for item in event.supporters]
    languages = ", ".join(language_in(ui_lang, event, item.code) for item in event.languages)
    interpretation = interpretation_line(ui_lang, event)
    starts = event.starts_at_utc.isoformat().replace("+00:00", "Z")
    facts = [
        f"<dt>{_e(translate(ui_lang, 'event.organizer'))}</dt>"
        f'<dd id="organizer">{_e(event.organizer.get(ui_lang))}</dd>',
    ]
    if supporters:
        facts.append(
            f"<dt>{_e(translate(ui_lang, 'event.supporters'))}</dt>"
            f'<dd id="supporters"><ul>{_list(f"<li>{_e(s)}</li>" for s in supporters)}</ul></dd>'
        )
    facts.append(
        f"<dt>{_e(translate(ui_lang, 'event.when'))}</dt>"
        f'<dd><time id="event-time" datetime="{_e(starts)}" data-timezone="{_e(event.timezone)}">'
        f"{_e(when_text(ui_lang, event))}</time>"
        f'<br><span id="local-time" hidden></span></dd>'
    )
    facts.append(
        f"<dt>{_e(translate(ui_lang, 'event.venue'))}</dt>"
        f'<dd id="venue">{_e(event.venue.get(ui_lang))}</dd>'
    )
    facts.append(
        f"<dt>{_e(translate(ui_lang, 'event.languages'))}</dt>"
        f'<dd id="languages">{_e(languages)}'
        + (f"<br>{_e(interpretation)}" if interpretation else "")
        + "</dd>"
    )
    register = (
        '<p class="call-to-action">'
        + (
            f"<span>{_e(translate(ui_lang, 'event.registration_required'))}</span> "
            if event.registration_required
            else ""
        )
        + f'<a class="button" href="/register">{_e(translate(ui_lang, "event.register"))}</a></p>'
    )
    note = (
        '<section class="note" aria-labelledby="note-heading">'
        f'<h2 id="note-heading">{_e(translate(ui_lang, "event.note"))}</h2>'
        f"<p>{_e(event.note.get(ui_lang))}</p></section>"
        if event.note
        else ""
    )
    sessions = _list(
        f'<section class="session" data-session="{_e(session.id)}" '
        f'aria-labelledby="session-{_e(session.id)}">'
        f'<h3 id="session-{_e(session.id)}">{_e(session.title.get(ui_lang))}</h3>'
        f'<ul class="speakers">{_list(_speaker(ui_lang, event, s) for s in session.speakers)}</ul>'
        "</section>"
        for session in event.sessions
    )
    return (
        f"<h1>{_e(title)}</h1>"
        f'<p class="lead">{_e(when_text(ui_lang, event))}</p>'
        f"{register}"
        f'<dl class="event-facts">{_list(facts)}</dl>'
        f"{note}"
        '<section class="sessions" aria-labelledby="sessions-heading">'
        f'<h2 id="sessions-heading">{_e(translate(ui_lang, "event.sessions"))}</h2>'
        f"{sessions}</section>"
    )


def event_head(ui_lang: str, event: Event, public_url: str) -> str:
    """`<title>`, description and Open Graph tags: what a link preview shows."""
    title = event.title.get(ui_lang)
    description = f"{when_text(ui_lang, event)} · {event.venue.get(ui_lang)}"
    locale = {"en": "en_GB", "fr": "fr_FR", "ru": "ru_RU"}.get(ui_lang, "en_GB")
    tags = [
        f"<title>{_e(title)}</title>",
        f'<meta name="description" content="{_e(description)}">',
        '<meta property="og:type" content="website">',
        f'<meta property="og:title" content="{_e(title)}">',
        f'<meta property="og:description" content="{_e(description)}">',
        f'<meta property="og:url" content="{_e(public_url)}/">',
        f'<meta property="og:locale" content="{locale}">',
        f'<meta property="og:site_name" content="{_e(event.organizer.get(ui_lang))}">',
        '<meta name="twitter:card" content="summary">',
    ]
    return "\n  ".join(tags)


async def event_page(request: web.Request) -> web.Response:
    event = request.app[appkeys.EVENT_KEY]
    ui_lang = language_of(request)
    return render_page(
        request,
        "index.html",
        fields={
            "head": event_head(ui_lang, event, request.app[appkeys.PUBLIC_URL_KEY]),
            "event": event_body(ui_lang, event),
        },
    )


def install_event_page(app: web.Application) -> None:
    app.router.add_get("/", event_page, name="page-event")
