"""The four consoles' pages: attendee (/watch), interpreter booth (/booth), moderator
studio (/studio) and speaker (/stage).

Each is a static HTML template in `signaling/static/` with its ES modules in
`signaling/static/console/`, served by `signaling.pages` (translations embedded,
`/static/` for the scripts). The WebSocket (`/ws`) decides what a link may do; the page
itself only looks at the link first, so that a person who opens a console without his
link, with a damaged or expired one, or with a link for another console, gets a whole
page saying so in his language, with the way out (register, get the link again, or the
console his link is for), instead of a console that cannot work.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from signaling import appkeys
from signaling.i18n import language_of, translate
from signaling.pages import check_template, render_page
from signaling.program import Event, UnknownBooth, UnknownSpeaker
from signaling.tokens import Claims, ExpiredToken, Role, TokenError

#: URL path -> template, one per role.
CONSOLE_PAGES: dict[str, str] = {
    "/watch": "watch.html",
    "/booth": "booth.html",
    "/studio": "studio.html",
    "/stage": "stage.html",
}
#: The role whose console each page is.
PAGE_ROLES: dict[str, Role] = {
    "/watch": Role.ATTENDEE,
    "/booth": Role.INTERPRETER,
    "/studio": Role.MODERATOR,
    "/stage": Role.SPEAKER,
}
ROLE_PAGES: dict[Role, str] = {role: path for path, role in PAGE_ROLES.items()}


@dataclass(frozen=True)
class AccessProblem:
    """Why a link does not open a console: `kind` is missing, bad, expired or wrong_role."""

    kind: str
    claims: Claims | None = None


def access_problem(
    path: str, token: str | None, claims_of: Callable[[str], Claims], event: Event
) -> AccessProblem | None:
    """What is wrong with opening console `path` with `token` (`claims_of` verifies it),
    or None."""
    if not token:
        return AccessProblem("missing")
    try:
        claims = claims_of(token)
    except ExpiredToken:
        return AccessProblem("expired")
    except TokenError:
        return AccessProblem("bad")
    if claims.role is not PAGE_ROLES[path]:
        return AccessProblem("wrong_role", claims)
    # A booth or a speaker the program no longer has: the link cannot work here.
    try:
        if claims.role is Role.INTERPRETER:
            event.booth(claims.booth or "")
        if claims.role is Role.SPEAKER:
            event.speaker(claims.speaker or "")
    except (UnknownBooth, UnknownSpeaker):
        return AccessProblem("bad", claims)
    return None


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def access_page(request: web.Request, path: str, problem: AccessProblem) -> web.Response:
    """The whole page that explains `problem`, in the visitor's language."""
    lang = language_of(request)
    title = translate(lang, f"access.{problem.kind}.title")
    parts = [f'<h1 id="access-title">{_e(title)}</h1>']
    actions: list[str] = []
    if problem.kind == "wrong_role" and problem.claims is not None:
        right = ROLE_PAGES[problem.claims.role]
        text = translate(
            lang,
            "access.wrong_role.text",
            role=translate(lang, f"access.role.{problem.claims.role.value}"),
            page=translate(lang, f"access.page.{right.strip('/')}"),
        )
        href = str(request.rel_url.with_path(right).with_query(request.rel_url.query))
        label = translate(lang, "access.open_right_page")
        actions.append(f'<a class="button" href="{_e(href)}">{_e(label)}</a>')
    else:
        text = translate(lang, f"access.{problem.kind}.text")
    parts.append(f'<p id="access-text">{_e(text)}</p>')
    attendee_page = PAGE_ROLES[path] is Role.ATTENDEE
    if problem.kind != "wrong_role":
        if attendee_page:
            actions.append(
                f'<a class="button" href="/register">{_e(translate(lang, "access.register"))}</a>'
            )
        else:
            parts.append(f'<p id="access-staff">{_e(translate(lang, "access.staff"))}</p>')
    actions.append(f'<a href="/">{_e(translate(lang, "access.event"))}</a>')
    parts.append(f'<p class="actions">{"".join(actions)}</p>')
    event = request.app[appkeys.EVENT_KEY]
    return render_page(
        request,
        "access.html",
        fields={
            "title": _e(f"{title} — {event.title.get(lang)}"),
            "body": "".join(parts),
            "problem": problem.kind,
        },
        # 401: no usable credentials; 403: good credentials for something else.
        status=403 if problem.kind == "wrong_role" else 401,
    )


def add_console(app: web.Application, path: str, template: str) -> None:
    async def page(request: web.Request) -> web.Response:
        signer = request.app[appkeys.SIGNER_KEY]
        problem = access_problem(
            path, request.query.get("token"), signer.verify, request.app[appkeys.EVENT_KEY]
        )
        if problem is not None:
            return access_page(request, path, problem)
        return render_page(request, template)

    check_template(template)
    check_template("access.html")
    app.router.add_get(path, page, name=f"page-{path.strip('/')}")


def install_console_pages(app: web.Application) -> None:
    """Add the console routes to `app` (an extension of `signaling.app.create_app`)."""
    for path, template in CONSOLE_PAGES.items():
        add_console(app, path, template)
