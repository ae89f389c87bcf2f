"""What a page says before any script runs: the event page as a search engine or a link
preview reads it, the consoles' refusals of a missing, bad, expired or wrong link, and
the calendar entry, over plain HTTP."""

from __future__ import annotations

import html
import re
import time
from datetime import timedelta
from html.parser import HTMLParser

import aiohttp
import icalendar
import pytest

from signaling.secret import load_or_create_secret
from signaling.tokens import Role, TokenSigner
from tests.support.server import RunningServer


class Page(HTMLParser):
    """The parts of an HTML page these tests read: meta tags, title, text, links."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.meta: dict[str, str] = {}
        self.title = ""
        self.text: list[str] = []
        self.links: dict[str, str] = {}
        self.scripts = 0
        self._in: list[str] = []
        self._href: str | None = None
        self.feed(source)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "meta" and ("property" in values or "name" in values):
            self.meta[values.get("property") or values["name"]] = values.get("content", "")
        if tag == "script" and values.get("type") != "application/json":
            self.scripts += 1
        if tag == "a":
            self._href = values.get("href")
        self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._in and self._in[-1] == tag:
            self._in.pop()
        if tag == "a":
            self._href = None

    def handle_data(self, data: str) -> None:
        if self._in and self._in[-1] == "title":
            self.title += data
        elif "script" not in self._in:
            self.text.append(data)
            if self._href is not None and data.strip():
                self.links[data.strip()] = self._href

    @property
    def body(self) -> str:
        return re.sub(r"\s+", " ", " ".join(self.text))


async def fetch(url: str, lang: str = "en") -> tuple[int, Page]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, headers={"Accept-Language": lang}) as response,
    ):
        return response.status, Page(await response.text())


@pytest.mark.parametrize(
    ("lang", "title", "date", "speaks", "languages"),
    [
        (
            "en",
            "Shared Historical Memory: Resistance Movement",
            "21 June 2027, 14:00 (Europe/Brussels time)",
            "Speaks Russian",
            "Russian, French",
        ),
        (
            "fr",
            "Mémoire historique partagée : le mouvement de la Résistance",
            "21 juin 2027 à 14:00",
            "Parle russe",
            "russe, français",
        ),
        (
            "ru",
            "Общая историческая память: движение Сопротивления",
            "21 июня 2027 г., 14:00",
            "Язык выступления: французский",
            "русский, французский",
        ),
    ],
)
async def test_the_event_page_is_whole_without_script(
    server: RunningServer, lang: str, title: str, date: str, speaks: str, languages: str
) -> None:
    status, page = await fetch(f"{server.url}/", lang)
    assert status == 200
    # What a link preview shows: the event, not the product.
    assert page.title == title
    assert page.meta["og:title"] == title
    assert date in page.meta["og:description"]
    assert date in page.meta["description"]
    assert page.meta["og:url"] == f"{server.url}/"
    body = page.body
    assert title in body and date in body
    assert f"{languages}" in body
    assert speaks in body
    for speaker in server.event.speakers:
        assert speaker.name in body
    for session in server.event.sessions:
        assert session.title.get(lang) in body
    assert "[object" not in body
    assert page.links[{"en": "Register", "fr": "S'inscrire", "ru": "Зарегистрироваться"}[lang]] == (
        "/register"
    )


async def test_a_hostile_program_text_is_escaped_on_the_server(start_server, tmp_path) -> None:
    import yaml

    from tests.support.server import SEED_PROGRAM

    data = yaml.safe_load(SEED_PROGRAM.read_text("utf-8"))
    data["title"]["en"] = '<script>alert(1)</script> & "quotes"'
    program = tmp_path / "hostile.yaml"
    program.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    server = await start_server(event_file=program)
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/?lang=en") as response:
        source = await response.text()
    assert "<script>alert(1)" not in source
    assert html.escape('<script>alert(1)</script> & "quotes"') in source


def token(
    server: RunningServer, role: Role, ttl: timedelta = timedelta(hours=1), **scope: str
) -> str:
    return server.signer.issue(role, subject="someone", ttl=ttl, **scope)


@pytest.mark.parametrize("lang", ["en", "fr", "ru"])
async def test_a_console_opened_without_its_link_explains_and_offers_registration(
    server: RunningServer, lang: str
) -> None:
    status, page = await fetch(f"{server.url}/watch?lang={lang}")
    assert status == 401
    heading = {
        "en": "This page needs your personal link",
        "fr": "Cette page nécessite votre lien personnel",
        "ru": "Для этой страницы нужна ваша личная ссылка",
    }[lang]
    assert heading in page.body and page.title.startswith(heading)
    register = {
        "en": "Register or get your link again",
        "fr": "S'inscrire ou retrouver son lien",
        "ru": "Зарегистрироваться или снова получить ссылку",
    }[lang]
    assert page.links[register] == "/register"
    assert page.scripts == 0


async def test_bad_and_expired_links_are_told_apart(server: RunningServer) -> None:
    status, page = await fetch(f"{server.url}/watch?token=damaged.link&lang=en")
    assert status == 401 and "This link does not work" in page.body
    # Issued a minute ago for a second: expired without waiting for it.
    a_minute_ago = TokenSigner(
        load_or_create_secret(server.settings), clock=lambda: time.time() - 60
    )
    expired = a_minute_ago.issue(Role.ATTENDEE, subject="someone", ttl=timedelta(seconds=1))
    status, page = await fetch(f"{server.url}/watch?token={expired}&lang=en")
    assert status == 401 and "This link has expired" in page.body
    assert "Register or get your link again" in page.links
    # A staff console says where new links come from.
    status, page = await fetch(f"{server.url}/booth?token=damaged.link&lang=en")
    assert status == 401 and "ask him for a new one" in page.body
    assert "Register or get your link again" not in page.links


async def test_a_link_opened_on_another_console_leads_to_its_own(server: RunningServer) -> None:
    attendee = token(server, Role.ATTENDEE)
    status, page = await fetch(f"{server.url}/booth?token={attendee}&lang=en")
    assert status == 403
    assert "It is an attendee's link. It opens the event's player." in page.body
    assert page.links["Open the right page"] == f"/watch?token={attendee}&lang=en"
    # No raw server sentence, no console.
    assert "may not send" not in page.body and "Microphone" not in page.body

    moderator = token(server, Role.MODERATOR)
    status, page = await fetch(f"{server.url}/watch?token={moderator}&lang=fr")
    assert status == 403
    assert "C'est un lien de modérateur. Il ouvre le studio du modérateur." in page.body
    assert page.links["Ouvrir la bonne page"] == f"/studio?token={moderator}&lang=fr"


async def test_a_staff_link_for_a_booth_the_program_lacks_does_not_open(
    server: RunningServer,
) -> None:
    ghost = token(server, Role.INTERPRETER, booth="de-en")
    status, page = await fetch(f"{server.url}/booth?token={ghost}&lang=en")
    assert status == 401 and "This link does not work" in page.body


async def test_a_good_link_opens_its_console(server: RunningServer) -> None:
    for path, role, scope in (
        ("watch", Role.ATTENDEE, {}),
        ("booth", Role.INTERPRETER, {"booth": "ru-fr"}),
        ("studio", Role.MODERATOR, {}),
        ("stage", Role.SPEAKER, {"speaker": "andre-samray"}),
    ):
        status, page = await fetch(f"{server.url}/{path}?token={token(server, role, **scope)}")
        assert status == 200, path
        assert page.scripts >= 1, path


async def test_the_calendar_entry_carries_the_personal_link(server: RunningServer) -> None:
    attendee = token(server, Role.ATTENDEE)
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/calendar.ics?token={attendee}&lang=fr") as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/calendar")
        assert "attachment" in response.headers["Content-Disposition"]
        calendar = icalendar.Calendar.from_ical(await response.read())
    (entry,) = calendar.walk("VEVENT")
    assert str(entry["SUMMARY"]) == server.event.title.get("fr")
    assert str(entry["URL"]) == f"{server.url}/watch?token={attendee}"
    assert entry.decoded("DTSTART") == server.event.starts_at_utc

    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/calendar.ics") as response,
    ):
        entry = icalendar.Calendar.from_ical(await response.read()).walk("VEVENT")[0]
        assert str(entry["URL"]) == f"{server.url}/"
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/calendar.ics?token=forged") as response,
    ):
        assert response.status == 403
        assert "not valid" in await response.text()
