"""The languages of the pages (English, French, Russian) and their translations.

Translations are flat JSON catalogs in `signaling/locales/`: `{lang}.json` for
the public pages, plus any `{area}.{lang}.json` (e.g. `console.fr.json`) that
another set of pages adds; all of a language's files merge into one catalog.
The same catalog is embedded into every page, so the browser side
(`static/common/i18n.js`) and the server speak the same keys.

The page language is chosen, in order, from `?lang=`, the `lang` cookie the
switcher leaves behind, the browser's Accept-Language, then English.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

from aiohttp import web

SUPPORTED_LANGUAGES: tuple[str, ...] = ("en", "fr", "ru")
DEFAULT_LANGUAGE = "en"
LANG_COOKIE = "lang"
LOCALES_DIR = Path(__file__).with_name("locales")

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class MissingTranslation(KeyError):
    """A key asked for is in no catalog: a programming error, caught by the catalog tests."""


@cache
def catalog(lang: str) -> dict[str, str]:
    """All translations of one UI language, the default language filling any gap."""
    if lang not in SUPPORTED_LANGUAGES:
        raise ValueError(f"unsupported UI language {lang!r}; use one of {SUPPORTED_LANGUAGES}")
    merged: dict[str, str] = {}
    if lang != DEFAULT_LANGUAGE:
        merged.update(catalog(DEFAULT_LANGUAGE))
    files = [LOCALES_DIR / f"{lang}.json", *sorted(LOCALES_DIR.glob(f"*.{lang}.json"))]
    for path in files:
        if path.exists():
            merged.update(json.loads(path.read_text(encoding="utf-8")))
    return merged


def translate(lang: str, key: str, **params: object) -> str:
    """The text for `key` in `lang`, with `{name}` placeholders filled from `params`."""
    try:
        text = catalog(lang)[key]
    except KeyError:
        raise MissingTranslation(key) from None
    return _PLACEHOLDER.sub(lambda m: str(params.get(m.group(1), m.group(0))), text)


def negotiate(accept_language: str | None) -> str:
    """Best supported UI language for an Accept-Language header (RFC 9110 weights)."""
    if not accept_language:
        return DEFAULT_LANGUAGE
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")):
        fields = part.strip().split(";")
        tag = fields[0].strip().lower()
        if not tag:
            continue
        weight = 1.0
        for param in fields[1:]:
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if weight <= 0:
            continue
        ranked.append((-weight, position, tag))
    for _, _, tag in sorted(ranked):
        primary = tag.split("-")[0]
        if primary in SUPPORTED_LANGUAGES:
            return primary
        if tag == "*":
            return DEFAULT_LANGUAGE
    return DEFAULT_LANGUAGE


def language_of(request: web.Request) -> str:
    """The UI language for this request: ?lang=, then the cookie, then Accept-Language."""
    for candidate in (request.query.get("lang"), request.cookies.get(LANG_COOKIE)):
        if candidate and candidate.lower() in SUPPORTED_LANGUAGES:
            return candidate.lower()
    return negotiate(request.headers.get("Accept-Language"))
