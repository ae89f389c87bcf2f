"""The browser pages: static HTML templates and ES modules, no build step.

A page is an HTML file in `signaling/static/` with a few placeholders filled
per request: `{{lang}}` (the UI language), `{{t:key}}` (a translation,
HTML-escaped), `{{switcher}}` (the language switcher, keeping the rest of the
query string, e.g. a token) and `{{i18n}}` (the language's catalog as JSON, for
`static/common/i18n.js`, as a JSON data block: the pages run no inline script, see
`signaling.security_headers`) and `{{html:name}}` (markup rendered on the server by
the page's handler, already escaped). Everything else the page shows comes from the JSON
API and is put into the document with `textContent`, never as HTML.

Other sets of pages register theirs with `add_page(app, "/watch", "watch.html")`.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from aiohttp import web

from signaling.i18n import LANG_COOKIE, SUPPORTED_LANGUAGES, catalog, language_of, translate

STATIC_DIR = Path(__file__).with_name("static")
LANG_COOKIE_MAX_AGE = 365 * 24 * 3600

_PLACEHOLDER = re.compile(r"\{\{\s*(lang|i18n|switcher|t:[A-Za-z0-9_.-]+|html:[a-z_]+)\s*\}\}")


class UnknownPage(LookupError):
    """A page template that is not in `signaling/static/`."""


@cache
def _template(name: str) -> str:
    path = (STATIC_DIR / name).resolve()
    if path.parent != STATIC_DIR.resolve() or not path.is_file():
        raise UnknownPage(f"no page template {name!r} in {STATIC_DIR.name}/")
    return path.read_text(encoding="utf-8")


def check_template(name: str) -> None:
    """Raise `UnknownPage` now, at startup, rather than at the first visitor."""
    _template(name)


def catalog_script(lang: str) -> str:
    payload = json.dumps(
        {"lang": lang, "languages": list(SUPPORTED_LANGUAGES), "messages": catalog(lang)},
        ensure_ascii=False,
    )
    # "<" escaped so that no text in the catalog can close the script element.
    payload = payload.replace("<", "\\u003c")
    return f'<script type="application/json" id="i18n-catalog">{payload}</script>'


def _switcher(request: web.Request, lang: str) -> str:
    items = []
    for code in SUPPORTED_LANGUAGES:
        href = html.escape(str(request.rel_url.update_query(lang=code)))
        current = ' aria-current="true"' if code == lang else ""
        label = html.escape(translate(code, f"lang.{code}"))
        items.append(
            f'<li><a href="{href}" hreflang="{code}" lang="{code}"{current}>{label}</a></li>'
        )
    aria = html.escape(translate(lang, "lang.switcher"))
    return f'<nav class="language-switcher" aria-label="{aria}"><ul>{"".join(items)}</ul></nav>'


def render_page(
    request: web.Request,
    template: str,
    *,
    fields: Mapping[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    """The page `template` in the request's UI language.

    `fields` fill `{{html:name}}` placeholders with markup the caller has escaped (a
    page rendered on the server, e.g. `signaling.event_page`); a missing one is empty.
    """
    lang = language_of(request)

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "lang":
            return lang
        if name == "i18n":
            return catalog_script(lang)
        if name == "switcher":
            return _switcher(request, lang)
        if name.startswith("html:"):
            return (fields or {}).get(name[5:], "")
        return html.escape(translate(lang, name[2:]))

    response = web.Response(
        status=status,
        text=_PLACEHOLDER.sub(fill, _template(template)),
        content_type="text/html",
        charset="utf-8",
        headers={
            "Cache-Control": "no-cache",
            "Content-Language": lang,
            "Vary": "Accept-Language, Cookie",
        },
    )
    chosen = request.query.get("lang", "").lower()
    if chosen in SUPPORTED_LANGUAGES:
        response.set_cookie(
            LANG_COOKIE, chosen, max_age=LANG_COOKIE_MAX_AGE, path="/", samesite="Lax"
        )
    return response


def add_page(app: web.Application, path: str, template: str, *, name: str | None = None) -> None:
    """Serve the template `template` (a file in `signaling/static/`) at `path`."""
    _template(template)  # fail at startup, not at the first visitor

    async def page(request: web.Request) -> web.Response:
        return render_page(request, template)

    app.router.add_get(path, page, name=name)


def add_routes(app: web.Application) -> None:
    add_page(app, "/register", "register.html", name="page-register")
    app.router.add_static("/static/", STATIC_DIR, name="static", append_version=False)
