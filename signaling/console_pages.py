"""The four consoles' pages: attendee (/watch), interpreter booth (/booth), moderator
studio (/studio) and speaker (/stage).

Each is a static HTML template in `signaling/static/` with its ES modules in
`signaling/static/console/`, served by `signaling.pages` (translations embedded,
`/static/` for the scripts). The page itself does nothing without the token in its
link: the WebSocket (`/ws`) checks it, so serving the page needs no check here.
"""

from __future__ import annotations

from aiohttp import web

from signaling.pages import add_page

#: URL path -> template, one per role.
CONSOLE_PAGES: dict[str, str] = {
    "/watch": "watch.html",
    "/booth": "booth.html",
    "/studio": "studio.html",
    "/stage": "stage.html",
}


def install_console_pages(app: web.Application) -> None:
    """Add the console routes to `app` (an extension of `signaling.app.create_app`)."""
    for path, template in CONSOLE_PAGES.items():
        add_page(app, path, template, name=f"page-{path.strip('/')}")
