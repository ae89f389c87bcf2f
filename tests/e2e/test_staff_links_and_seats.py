"""Staff links in Chromium, as the organizer and his staff live them.

A speaker's link opened on a second page: that page says the link is open elsewhere and
offers to take over; the first page is asked and may keep it; the studio is asked too and
lets the new page take over, and the first page says why it stopped. The studio lists
the staff links, revokes one after a confirmation, and the booth page holding it says
the organizer withdrew it. The pages fit a phone and a laptop in English, French and
Russian.

Set DRAGOMAN_SCREENSHOTS to a directory to keep a screenshot of each state.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, Playwright, expect

from signaling.appkeys import EVENT_KEY, SIGNER_KEY, STORE_KEY
from signaling.invitations import Invitation, new_invitation_id
from signaling.tokens import Role
from tests.e2e.conftest import LiveNode, started_node
from tests.e2e.test_booth_and_stage_pages import SIZES, layout_problems_at, open_page
from tests.support.browser import ON_THE_MODULE_LOOP, chromium

#: The tests share one browser (each opens its own contexts): see tests/support/browser.py.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(300), ON_THE_MODULE_LOOP]

SPEAKER_ID, SPEAKER_NAME = "grigory-tsidenkov", "Grigory Tsidenkov"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_browser(module_playwright: Playwright) -> AsyncIterator[Browser]:
    async with chromium(module_playwright, fake_media=True) as browser:
        yield browser


@pytest_asyncio.fixture(loop_scope="module")
async def browser(media_browser: Browser) -> Browser:
    return media_browser


@pytest_asyncio.fixture(loop_scope="module")
async def live_node(tmp_path: Path) -> AsyncIterator[LiveNode]:
    async with started_node(tmp_path / "node") as node:
        yield node


async def invited(node: LiveNode, page: str, role: Role, subject: str, **scope: str) -> str:
    """A page URL whose link is a recorded invitation, as `dragoman invite` makes them."""
    assert node.app is not None
    now = datetime.now(UTC)
    invitation = Invitation(
        id=new_invitation_id(),
        event_id=node.app[EVENT_KEY].id,
        role=role,
        subject=subject,
        name=scope.pop("name", ""),
        issued_at=now,
        expires_at=now + timedelta(hours=2),
        **scope,  # type: ignore[arg-type]
    )
    await node.app[STORE_KEY].add_invitation(invitation)
    token = node.app[SIGNER_KEY].issue(
        role, subject=subject, invitation=invitation.id, ttl=timedelta(hours=2), **scope
    )
    return f"{node.url}/{page}?token={token}&lang=en"


async def connected(page: Page) -> None:
    await expect(page.locator("#connection-status")).to_have_attribute("data-state", "online")


async def shoot(page: Page, name: str) -> None:
    shots = os.environ.get("DRAGOMAN_SCREENSHOTS")
    if shots:
        await page.screenshot(path=str(Path(shots) / f"{name}.png"), full_page=True)


async def test_a_second_page_asks_and_the_studio_lets_it_take_over(
    live_node: LiveNode, browser: Browser
) -> None:
    stage_link = await invited(
        live_node, "stage", Role.SPEAKER, SPEAKER_ID, speaker=SPEAKER_ID, name=SPEAKER_NAME
    )
    studio = await open_page(browser, live_node.link("studio", Role.MODERATOR, "mod"))
    first = await open_page(browser, stage_link)
    await connected(first)

    second = await open_page(browser, stage_link)
    seat = second.get_by_role("alert").filter(has_text="already open on another page")
    await expect(seat).to_be_visible()
    await expect(second.locator("#connection-status")).to_have_attribute("data-state", "refused")
    await connected(first)

    join = second.get_by_role("button", name="Join")
    await expect(join).to_be_visible()

    # Asked from the second page: while it waits it says so, for how long at most, offers
    # to give up, and shows nothing that contradicts it (no Join); the first page keeps it.
    await second.get_by_role("button", name="Take over on this page").click()
    await expect(second.locator("#seat")).to_contain_text("waiting for the other page")
    await expect(second.locator("#seat")).to_contain_text("within 60 s")
    await expect(second.get_by_role("button", name="Cancel the request")).to_be_visible()
    await expect(second.locator("#connection-status")).to_have_attribute("data-state", "waiting")
    await expect(join).to_be_hidden()
    asked = first.get_by_role("alert").filter(has_text="Let it take over?")
    await expect(asked).to_be_visible()
    claim = studio.get_by_role("alert").filter(has_text=f"Speaker: {SPEAKER_NAME}")
    await expect(claim).to_contain_text("asks to take over")
    await first.get_by_role("button", name="Keep it here").click()
    await expect(second.locator("#seat")).to_contain_text("kept this link")
    await expect(join).to_be_visible()
    await expect(asked).to_be_hidden()
    await expect(claim).to_be_hidden()
    await connected(first)

    # Asked again: the studio allows it, the first page says why it stopped.
    await second.get_by_role("button", name="Take over on this page").click()
    allow = studio.get_by_role(
        "button", name=f"Let the new page of Speaker: {SPEAKER_NAME} take over"
    )
    await allow.click()
    await connected(second)
    await expect(second.locator("#seat")).to_be_hidden()
    await expect(first.locator("#seat")).to_contain_text("which took over from this one")
    await expect(first.locator("#connection-status")).to_have_attribute("data-state", "refused")
    await expect(first.get_by_role("button", name="Take over on this page")).to_be_visible()
    for page in (studio, first, second):
        assert page.errors == []  # type: ignore[attr-defined]


async def test_a_booth_page_waiting_for_its_seat_shows_only_that_and_may_give_up(
    live_node: LiveNode, browser: Browser
) -> None:
    link = live_node.link("booth", Role.INTERPRETER, "anna", booth="ru-fr")
    holder = await open_page(browser, link)
    await connected(holder)
    newcomer = await open_page(browser, link)
    take_over = newcomer.get_by_role("button", name="Take over on this page")
    await expect(take_over).to_be_visible()
    # Without the seat the booth knows nothing of the booth: no console that would guess.
    console = newcomer.get_by_role("button", name="Start listening")
    await expect(console).to_be_hidden()
    await expect(newcomer.get_by_text("No partner connected")).to_be_hidden()

    await take_over.click()
    asked = holder.get_by_role("alert").filter(has_text="Let it take over?")
    await expect(asked).to_be_visible()
    await expect(newcomer.locator("#seat")).to_contain_text("Time left: 0:")
    await expect(console).to_be_hidden()
    # Giving up withdraws the request: the holder is no longer asked; the offer is back.
    await newcomer.get_by_role("button", name="Cancel the request").click()
    await expect(asked).to_be_hidden()
    await expect(take_over).to_be_visible()
    await expect(newcomer.locator("#connection-status")).to_have_attribute("data-state", "refused")
    await connected(holder)
    for page in (holder, newcomer):
        assert page.errors == []  # type: ignore[attr-defined]


async def test_the_studio_revokes_a_link_after_a_confirmation(
    live_node: LiveNode, browser: Browser
) -> None:
    booth_link = await invited(
        live_node, "booth", Role.INTERPRETER, "anna", booth="ru-fr", name="Anna Petrova"
    )
    await invited(live_node, "stage", Role.SPEAKER, SPEAKER_ID, speaker=SPEAKER_ID)
    booth = await open_page(browser, booth_link)
    await connected(booth)
    studio_link = await invited(live_node, "studio", Role.MODERATOR, "marie", name="Marie")
    studio = await open_page(browser, studio_link)

    links = studio.get_by_role("list", name="Staff links")
    anna = "Interpreter, booth ru-fr: Anna Petrova"
    # Its own link is marked, and not offered for revocation (it would close this page).
    own = links.get_by_role("listitem").filter(has_text="Studio: Marie")
    await expect(own).to_contain_text("(this studio)")
    await expect(own.get_by_role("button")).to_have_count(0)
    await expect(links.get_by_role("listitem").filter(has_text=anna)).to_contain_text("valid until")
    await expect(links).to_contain_text(f"Speaker: {SPEAKER_NAME}")
    revoke = studio.get_by_role("button", name=f"Revoke the link of {anna}")
    await revoke.click()
    confirm = studio.get_by_role("alert").filter(has_text=f"Revoke the link of {anna}?")
    await expect(confirm).to_be_visible()
    await studio.get_by_role("button", name="Cancel").click()
    await expect(confirm).to_be_hidden()
    await connected(booth)

    await revoke.click()
    await studio.get_by_role("button", name="Yes, revoke").click()
    await expect(booth.locator("#connection-status")).to_contain_text("withdrawn by the organizer")
    await expect(booth.locator("#connection-status")).to_have_attribute("data-state", "refused")
    await expect(links.get_by_role("listitem").filter(has_text=anna)).to_contain_text("revoked on")
    await expect(revoke).to_be_hidden()
    # Reloaded, the page is refused at once.
    await booth.reload()
    await expect(booth.locator("#connection-status")).to_contain_text("withdrawn by the organizer")


@pytest.mark.parametrize("lang", ["en", "fr", "ru"])
async def test_the_seat_and_links_fit_a_phone_and_a_laptop(
    live_node: LiveNode, browser: Browser, lang: str
) -> None:
    shots = os.environ.get("DRAGOMAN_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (once, before the browser work)
    stage_link = await invited(
        live_node, "stage", Role.SPEAKER, SPEAKER_ID, speaker=SPEAKER_ID, name=SPEAKER_NAME
    )
    booth_link = await invited(
        live_node, "booth", Role.INTERPRETER, "anna", booth="ru-fr", name="Anna Petrova"
    )
    studio = await open_page(browser, live_node.link("studio", Role.MODERATOR, "mod"), lang=lang)
    holder = await open_page(browser, stage_link, lang=lang)
    await connected(holder)
    newcomer = await open_page(browser, stage_link, lang=lang)
    await expect(newcomer.locator("#seat button")).to_be_visible()
    booth = await open_page(browser, booth_link, lang=lang)
    await connected(booth)
    await newcomer.locator("#seat button").click()
    await expect(holder.locator("#seat .seat-allow")).to_be_visible()
    await expect(studio.locator(".seat-claim button")).to_have_count(2)
    await studio.locator("#links li", has_text="ru-fr").locator("button").click()
    await expect(studio.locator(".link-confirm")).to_be_visible()

    pages = (("studio", studio), ("stage-asked", holder), ("stage-waiting", newcomer))
    for size_name, (width, height) in SIZES.items():
        for name, page in pages:
            problems = await layout_problems_at(page, width, height)
            assert problems == [], (name, lang, size_name, problems)
            await shoot(page, f"links-{name}-{size_name}-{lang}")
    await holder.locator("#seat .seat-keep").click()
    await expect(newcomer.locator("#seat button")).to_be_visible()
    await studio.locator(".link-confirm button").first.click()
    await expect(booth.locator("#connection-status")).to_have_attribute("data-state", "refused")
    for size_name, (width, height) in SIZES.items():
        for name, page in (("stage-refused", newcomer), ("booth-revoked", booth)):
            problems = await layout_problems_at(page, width, height)
            assert problems == [], (name, lang, size_name, problems)
            await shoot(page, f"links-{name}-{size_name}-{lang}")
    for page in (studio, holder, newcomer, booth):
        assert page.errors == []  # type: ignore[attr-defined]
