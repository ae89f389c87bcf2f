"""The consoles' translations: every language has every key, and every key a console asks for.

The server fills a missing French or Russian text with the English one, so a forgotten
translation would not show up as an error anywhere else. No browser needed here.
"""

from __future__ import annotations

import json
import re

import pytest

from signaling.i18n import LOCALES_DIR, SUPPORTED_LANGUAGES
from signaling.pages import STATIC_DIR

PLACEHOLDER = re.compile(r"\{(\w+)\}")


def console_catalog(lang: str) -> dict[str, str]:
    return json.loads((LOCALES_DIR / f"console.{lang}.json").read_text("utf-8"))


@pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
def test_every_language_has_every_console_key(lang: str) -> None:
    english = console_catalog("en")
    own = console_catalog(lang)
    assert set(own) == set(english), (set(english) - set(own), set(own) - set(english))
    for key, text in own.items():
        assert text.strip(), key
        assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(english[key])), key


def test_every_key_a_console_uses_is_translated() -> None:
    used: set[str] = set()
    for name in ("watch", "booth", "studio", "stage"):
        html = (STATIC_DIR / f"{name}.html").read_text("utf-8")
        used |= set(re.findall(r"\{\{\s*t:([A-Za-z0-9_.-]+)\s*\}\}", html))
    for path in (STATIC_DIR / "console").glob("*.js"):
        # Literal keys only: t("booth.slow_down"), and keys chosen by a condition.
        used |= set(
            re.findall(
                r"""["'`]((?:console|watch|booth|studio|stage|chat)\.[a-z_.]+)["'`]""",
                path.read_text("utf-8"),
            )
        )
    assert "booth.slow_down" in used and "studio.floor_language" in used
    assert "chat.send" in used and "booth.light_muted" in used
    own = {lang: set(console_catalog(lang)) for lang in SUPPORTED_LANGUAGES}
    base = {
        lang: set(json.loads((LOCALES_DIR / f"{lang}.json").read_text("utf-8")))
        for lang in SUPPORTED_LANGUAGES
    }
    for lang in SUPPORTED_LANGUAGES:
        missing = used - own[lang] - base[lang]
        assert not missing, (lang, missing)
