"""The attendee's player driven as a person drives it: the language menu opens from the
globe button of the control bar (docs/consoles.md), its choices are found by role and
name, and it is closed with Escape, as menus are."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

#: The accessible name of the menu button starts with "Language" (then the channel).
MENU_BUTTON = {"en": r"^Language\s", "fr": r"^Langue\s", "ru": r"^Язык\s"}


async def open_language_menu(watch: Page, lang: str = "en") -> None:
    button = watch.get_by_role("button", name=re.compile(MENU_BUTTON[lang]))
    if await button.get_attribute("aria-expanded") != "true":
        await button.click()
    await expect(watch.locator("#language-menu")).to_be_visible()


async def close_language_menu(watch: Page) -> None:
    if await watch.locator("#language-menu").is_visible():
        await watch.locator("#language-menu").press("Escape")
    await expect(watch.locator("#language-menu")).to_be_hidden()


async def choose(watch: Page, language: str, lang: str = "en") -> None:
    """Pick a channel ("Original", "Français", "Русский") from the player's menu."""
    await open_language_menu(watch, lang)
    radios = watch.get_by_role(
        "radiogroup", name={"en": "Language", "fr": "Langue", "ru": "Язык"}[lang]
    )
    await radios.get_by_role("radio", name=language, exact=True).check()
    await close_language_menu(watch)


async def original_underneath(watch: Page, percent: int | None) -> None:
    """Hear the original under the interpretation at `percent`, or not (None)."""
    await open_language_menu(watch)
    box = watch.get_by_role("checkbox", name="Hear the original underneath")
    if percent is None:
        await box.uncheck()
    else:
        await box.check()
        await watch.get_by_role("slider", name="Volume of the original").fill(str(percent))
    await close_language_menu(watch)


async def audio_only(watch: Page, on: bool) -> None:
    await open_language_menu(watch)
    box = watch.get_by_role("checkbox", name="Audio only")
    await (box.check() if on else box.uncheck())
    await close_language_menu(watch)


async def sign_language(watch: Page, label: str) -> None:
    await open_language_menu(watch)
    await watch.get_by_role("combobox", name="Sign language").select_option(label=label)
    await close_language_menu(watch)
