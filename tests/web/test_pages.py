"""The public pages in headless Chromium, found by role and accessible name as a screen
reader would: the event page, the registration form, three languages, escaping."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import icalendar
import pytest
import pytest_asyncio
import yaml
from playwright.async_api import Browser, Page, Playwright, expect

from signaling.registration import RegistrationLimits
from tests.support.browser import (
    ON_THE_MODULE_LOOP,
    NewContext,
    chromium,
    contexts_in,
    page_errors,
)
from tests.support.server import REPO_ROOT, RunningServer, StartServer, servers_in
from tests.support.smtp_server import SmtpServer, start_smtp_server

#: The tests share one browser (each opens its own contexts): see tests/support/browser.py.
#: The fixtures below are the usual ones (tests/support/), on the module's loop.
pytestmark = [pytest.mark.browser, ON_THE_MODULE_LOOP]

HOSTILE_NAME = "<script>alert(1)</script>"
SEED = REPO_ROOT / "config" / "events" / "shared-historical-memory.yaml"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_browser(module_playwright: Playwright) -> AsyncIterator[Browser]:
    async with chromium(module_playwright) as browser:
        yield browser


@pytest_asyncio.fixture(loop_scope="module")
async def new_context(module_browser: Browser) -> AsyncIterator[NewContext]:
    async with contexts_in(module_browser) as make:
        yield make


@pytest_asyncio.fixture(loop_scope="module")
async def page(new_context: NewContext) -> Page:
    context = await new_context()
    return await context.new_page()


@pytest_asyncio.fixture(loop_scope="module")
async def start_server(tmp_path: Path) -> AsyncIterator[StartServer]:
    async with servers_in(tmp_path) as start:
        yield start


@pytest_asyncio.fixture(loop_scope="module")
async def server(start_server: StartServer) -> RunningServer:
    return await start_server()


@pytest_asyncio.fixture(loop_scope="module")
async def smtp_server() -> AsyncIterator[SmtpServer]:
    server = await start_smtp_server()
    try:
        yield server
    finally:
        await server.close()


async def register(page: Page, *, name: str, email: str, language: str | None = "ru") -> None:
    """Fill and send the English form (English is not a language of the seed event: the
    form asks for one instead of guessing)."""
    await page.get_by_role("textbox", name="Name").fill(name)
    await page.get_by_label("Email").fill(email)
    if language is not None:
        await page.get_by_label("Preferred language").select_option(language)
    await page.get_by_role("button", name="Register").click()


async def test_registering_through_the_form_shows_the_personal_link(
    server: RunningServer, page: Page
) -> None:
    errors = page_errors(page)
    await page.goto(f"{server.url}/register")
    language = page.get_by_role("combobox", name="Preferred language")
    # English is not an event language: the form asks ("Choose…") rather than guessing.
    await expect(language.get_by_role("option")).to_have_count(3)
    await expect(language).to_have_value("")
    await register(page, name="Алла Жуплатова", email="alla@example.org", language=None)
    await expect(language).to_have_accessible_description(re.compile("This field is required"))
    await language.select_option("ru")
    await page.get_by_role("button", name="Register").click()

    link = page.get_by_role("link", name="Open my link")
    await expect(link).to_have_attribute(
        "href", re.compile(rf"^{re.escape(server.url)}/watch\?token=\S+$")
    )
    await expect(page.get_by_role("heading", name=re.compile("You are registered"))).to_be_focused()
    # The confirmation replaces the filled form.
    await expect(page.get_by_role("textbox", name="Name")).to_be_hidden()
    await expect(page.locator("#registered-as")).to_contain_text("Алла Жуплатова")
    await expect(page.locator("#registered-as")).to_contain_text("Русский")
    await expect(page.locator("#starts-local")).to_contain_text("UTC")
    href = await link.get_attribute("href")
    assert href is not None
    claims = server.signer.verify(href.split("token=", 1)[1])
    stored = await server.store.registration_by_email(server.event.id, "alla@example.org")
    assert stored is not None and claims.registration == stored.id

    # "Add to calendar" downloads the event with this link in it.
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Add to calendar (.ics)").click()
    download = await download_info.value
    assert download.suggested_filename == f"{server.event.id}.ics"
    calendar_href = await page.get_by_role("link", name="Add to calendar (.ics)").get_attribute(
        "href"
    )
    assert calendar_href is not None
    response = await page.request.get(f"{server.url}{calendar_href}")
    calendar = icalendar.Calendar.from_ical(await response.body())
    (entry,) = calendar.walk("VEVENT")
    assert str(entry["URL"]) == href
    assert entry.decoded("DTSTART") == server.event.starts_at_utc

    # Another person at the same computer starts from an empty form.
    await page.get_by_role("button", name="Register someone else").click()
    await expect(page.get_by_role("textbox", name="Name")).to_have_value("")
    # The one refusal was the form sent without a language, on purpose.
    assert [error for error in errors if "status of 422" not in error] == []


async def test_registering_again_says_so_and_gives_the_same_link_holder(
    server: RunningServer, page: Page
) -> None:
    await page.goto(f"{server.url}/register")
    await register(page, name="Jean", email="jean@example.org")
    await expect(page.get_by_role("heading", name=re.compile("You are registered"))).to_be_visible()
    await page.reload()
    await register(page, name="Jean", email="JEAN@example.org")
    await expect(page.get_by_role("heading", name=re.compile("already registered"))).to_be_visible()
    # Without a mail server the link is shown again (docs/http-api.md, Privacy).
    await expect(page.get_by_role("link", name="Open my link")).to_be_visible()
    assert len(await server.store.registrations(server.event.id)) == 1


async def test_server_refusal_is_shown_next_to_the_field(server: RunningServer, page: Page) -> None:
    await page.goto(f"{server.url}/register")
    await register(page, name="Jean", email="jean.example.org")
    email = page.get_by_role("textbox", name="Email")
    await expect(email).to_have_attribute("aria-invalid", "true")
    await expect(email).to_have_accessible_description("This is not a valid email address.")
    await expect(email).to_be_focused()
    await expect(page.get_by_role("alert")).to_have_text("Please correct the highlighted fields.")
    await expect(page.get_by_role("textbox", name="Name")).not_to_have_attribute(
        "aria-invalid", "true"
    )

    # Corrected, the form goes through and the error disappears.
    await email.fill("jean@example.org")
    await page.get_by_role("button", name="Register").click()
    await expect(page.get_by_role("link", name="Open my link")).to_be_visible()


async def test_missing_name_is_reported_on_the_name_field(
    server: RunningServer, page: Page
) -> None:
    await page.goto(f"{server.url}/register")
    await register(page, name="", email="jean@example.org")
    name = page.get_by_role("textbox", name="Name")
    await expect(name).to_have_accessible_description("This field is required.")


async def test_hostile_name_is_shown_as_text_never_run(server: RunningServer, page: Page) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await page.goto(f"{server.url}/register")
    await register(page, name=HOSTILE_NAME, email="mallory@example.org")
    shown = page.locator("#registered-as")
    await expect(shown).to_contain_text(HOSTILE_NAME)
    assert await page.locator("#result script").count() == 0
    assert dialogs == []


async def test_french_page_from_the_browser_language(
    server: RunningServer, new_context: NewContext
) -> None:
    context = await new_context(locale="fr-FR")
    page = await context.new_page()
    await page.goto(f"{server.url}/register")
    await expect(page.locator("html")).to_have_attribute("lang", "fr")
    await page.get_by_role("textbox", name="Nom").fill("Élise Dubois")
    await page.get_by_role("textbox", name="Adresse e-mail").fill("elise@example.org")
    await expect(page.get_by_role("combobox", name="Langue préférée")).to_have_value("fr")
    await page.get_by_role("button", name="S'inscrire").click()
    await expect(page.get_by_role("heading", name=re.compile("Vous êtes inscrit"))).to_be_visible()


async def test_language_switcher_turns_the_page_russian_and_remembers(
    server: RunningServer, page: Page
) -> None:
    await page.goto(f"{server.url}/register")
    switcher = page.get_by_role("navigation", name="Page language")
    await switcher.get_by_role("link", name="Русский").click()
    await expect(page).to_have_url(re.compile(r"lang=ru"))
    await expect(page.get_by_role("textbox", name="Имя")).to_be_visible()
    await expect(page.get_by_role("textbox", name="Электронная почта")).to_be_visible()
    await expect(page.get_by_role("combobox", name="Предпочитаемый язык")).to_have_value("ru")
    await expect(page.get_by_role("button", name="Зарегистрироваться")).to_be_visible()
    # The choice sticks when the visitor moves on without ?lang=.
    await page.get_by_role("link", name="Вернуться к мероприятию").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Общая историческая память: движение Сопротивления"
    )


async def test_event_page_shows_program_speakers_and_both_times(
    server: RunningServer, new_context: NewContext
) -> None:
    context = await new_context(timezone_id="America/New_York")
    page = await context.new_page()
    errors = page_errors(page)
    await page.goto(f"{server.url}/")
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Shared Historical Memory: Resistance Movement"
    )
    await expect(page.locator("#organizer")).to_have_text("Russian House in Brussels")
    await expect(page.locator("#supporters")).to_contain_text("Samara")
    # 14:00 in Brussels is 08:00 in New York (both on summer time on 21 June).
    event_time = page.locator("#event-time")
    await expect(event_time).to_contain_text("21 June 2027")
    await expect(event_time).to_contain_text("14:00")
    await expect(event_time).to_contain_text("Europe/Brussels")
    local_time = page.locator("#local-time")
    await expect(local_time).to_contain_text("08:00")
    await expect(local_time).to_contain_text("America/New_York")

    sessions = page.locator("section.session")
    await expect(sessions).to_have_count(len(server.event.sessions))
    await expect(page.locator("li.speaker")).to_have_count(13)
    for speaker in server.event.speakers:
        item = page.locator(f'li.speaker[data-speaker="{speaker.id}"]')
        await expect(item).to_contain_text(speaker.name)
        await expect(item).to_contain_text(speaker.affiliation.get("en"))
        language = {"ru": "Russian", "fr": "French"}[speaker.language]
        await expect(item).to_contain_text(f"Speaks {language}")
    # In a sentence, languages are named in the page's language.
    await expect(page.locator("#languages")).to_contain_text("Russian ⇄ French")

    await page.get_by_role("link", name="Register").click()
    await expect(page).to_have_url(f"{server.url}/register")
    await expect(page.get_by_role("button", name="Register")).to_be_visible()
    assert errors == []


async def test_event_page_in_russian_from_the_browser_language(
    server: RunningServer, new_context: NewContext
) -> None:
    context = await new_context(locale="ru-RU", timezone_id="Europe/Moscow")
    page = await context.new_page()
    await page.goto(f"{server.url}/")
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Общая историческая память: движение Сопротивления"
    )
    await expect(page.locator("#local-time")).to_contain_text("15:00")
    await expect(page.get_by_role("link", name="Зарегистрироваться")).to_be_visible()


async def test_pages_follow_any_program_not_just_the_seed(
    start_server: StartServer, new_context: NewContext, tmp_path: Path
) -> None:
    data: dict[str, Any] = yaml.safe_load(SEED.read_text("utf-8"))
    data["title"] = {"en": "Harbour Council", "fr": "Conseil du port"}
    data["timezone"] = "Asia/Tokyo"
    data["starts_at"] = "2030-01-15T09:30"
    data["supporters"] = []
    data.pop("note", None)
    data["registration_required"] = False
    data["languages"].append({"code": "de", "name": "Deutsch"})
    data["booths"].append({"id": "de", "name": "Deutsch", "works_into": ["de"]})
    program = tmp_path / "council.yaml"
    program.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    server = await start_server(event_file=program)

    context = await new_context(locale="fr-FR", timezone_id="Europe/Paris")
    page = await context.new_page()
    errors = page_errors(page)
    await page.goto(f"{server.url}/")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Conseil du port")
    await expect(page.locator("#event-time")).to_contain_text("09:30")
    await expect(page.locator("#event-time")).to_contain_text("Asia/Tokyo")
    await expect(page.locator("#local-time")).to_contain_text("01:30")
    await expect(page.locator("#languages")).to_contain_text("allemand")
    await expect(page.locator("#languages")).to_contain_text("russe, français, allemand")
    assert await page.locator("#supporters").count() == 0
    assert await page.locator(".note").count() == 0

    await page.get_by_role("link", name="S'inscrire").click()
    language = page.get_by_role("combobox", name="Langue préférée")
    await expect(language.get_by_role("option")).to_have_count(3)
    await page.get_by_role("textbox", name="Nom").fill("Hans Müller")
    await page.get_by_role("textbox", name="Adresse e-mail").fill("hans@example.org")
    # Where a person picks a language, it has its own name.
    await expect(language.get_by_role("option", name="Deutsch")).to_have_count(1)
    await language.select_option("de")
    await page.get_by_role("button", name="S'inscrire").click()
    await expect(page.locator("#registered-as")).to_contain_text("Deutsch")
    stored = await server.store.registration_by_email(server.event.id, "hans@example.org")
    assert stored is not None and stored.language == "de"
    assert errors == []


async def test_a_rate_limit_says_how_long_to_wait_in_the_page_language(
    start_server: StartServer, new_context: NewContext
) -> None:
    server = await start_server(registration_limits=RegistrationLimits(per_client=1))
    context = await new_context(locale="fr-FR")
    page = await context.new_page()
    await page.goto(f"{server.url}/register")
    await page.get_by_role("textbox", name="Nom").fill("Élise")
    await page.get_by_role("textbox", name="Adresse e-mail").fill("elise@example.org")
    await page.get_by_role("button", name="S'inscrire").click()
    await page.get_by_role("button", name="Inscrire une autre personne").click()
    await page.get_by_role("textbox", name="Nom").fill("Marc")
    await page.get_by_role("textbox", name="Adresse e-mail").fill("marc@example.org")
    await page.get_by_role("button", name="S'inscrire").click()
    await expect(page.get_by_role("alert")).to_have_text(
        "Trop d'inscriptions depuis votre réseau. Veuillez réessayer dans 10 min."
    )


async def test_with_a_mail_server_a_known_address_gets_its_link_by_mail_only(
    start_server: StartServer, page: Page, smtp_server: SmtpServer
) -> None:
    server = await start_server(
        smtp_url=f"smtp+plain://127.0.0.1:{smtp_server.port}", mail_from="events@example.org"
    )
    await page.goto(f"{server.url}/register")
    await register(page, name="Anna", email="anna@example.org")
    await expect(page.locator("#mail-status")).to_have_text(
        "We have also sent it to anna@example.org, with a calendar entry."
    )
    assert (await smtp_server.next_message())["To"] == "anna@example.org"
    await page.get_by_role("button", name="Register someone else").click()
    await register(page, name="Mallory", email="ANNA@example.org")
    await expect(page.locator("#registered-as")).to_have_text(
        "This address is already registered. We have sent the personal link to "
        "anna@example.org again."
    )
    await expect(page.get_by_role("link", name="Open my link")).to_be_hidden()
    await expect(page.locator("#result")).not_to_contain_text("Anna")
    assert (await smtp_server.next_message())["To"] == "anna@example.org"
