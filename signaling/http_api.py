"""The JSON HTTP API behind the public pages: the program, registration, health.

Every error a client can cause is answered as `{"error": {"code", "message",
"field"}}` with the HTTP status that names its kind (400 malformed, 413 too
large, 415 not JSON, 422 invalid field, 429 too many attempts), so a page can
show the message next to the field it concerns. Documented in docs/http-api.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Gauge

from signaling import appkeys, untrusted_json
from signaling.calendar_entry import event_ics
from signaling.client_address import client_address
from signaling.i18n import language_of, translate
from signaling.letters import registration_letter
from signaling.mail import MailError
from signaling.metrics import CONTENT_TYPE, render
from signaling.program import Event
from signaling.registration import (
    NAME_MAX,
    Registration,
    RegistrationError,
    RegistrationRateLimited,
    count_client_attempt,
    email_key,
    normalise_email,
    register_attendee,
)
from signaling.store import StoreError, StoreFull
from signaling.tokens import Role, TokenError
from signaling.untrusted_json import printable

log = logging.getLogger(__name__)

#: Largest request body the API reads; a registration is a few hundred bytes.
MAX_BODY_BYTES = 16 * 1024
REGISTRATION_FIELDS = ("name", "email", "language")
#: IANA zone names are short; anything longer is not one.
TIMEZONE_MAX = 64
#: An attendee link stays valid at least this long after the event starts.
ATTENDEE_LINK_AFTER_START = timedelta(days=7)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: What a 503 for an unavailable store asks the client to wait before trying again.
STORE_RETRY_AFTER_S = 60

_CREATED_COUNTER = web.AppKey("registrations_created", Counter)
_STORED_GAUGE = web.AppKey("registrations_stored", Gauge)


class ApiError(web.HTTPException):
    """An error answered as the API's JSON error body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status_code = status
        # `printable`: a refusal that quotes what it refuses must still encode as UTF-8.
        message = printable(message, 500)
        super().__init__(
            text=json.dumps(
                {"error": {"code": code, "message": message, "field": field}}, ensure_ascii=False
            ),
            content_type="application/json",
            headers=headers,
        )
        self.code = code
        self.message = message
        self.field = field


def json_response(data: Any, status: int = 200, *, token: bool = False) -> web.Response:
    """`data` as JSON; `token`: the body carries a personal link, never to be stored."""
    return web.json_response(
        data,
        status=status,
        dumps=lambda value: json.dumps(value, ensure_ascii=False),
        headers={"Cache-Control": "no-store"} if token else None,
    )


async def read_json_object(request: web.Request, max_bytes: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """The request body as a JSON object, or an `ApiError` saying what is wrong with it.

    The body must arrive within the node's body read timeout; it is parsed as untrusted
    JSON (`signaling.untrusted_json`: no deep nesting, no huge numbers, no lone
    surrogates), so no body can make the answer a 500."""
    if request.content_type != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the body as JSON with 'Content-Type: application/json' "
            f"(got {printable(request.content_type or 'no content type', 60)!r})",
        )
    if request.content_length is not None and request.content_length > max_bytes:
        raise ApiError(413, "body_too_large", f"the request body must not exceed {max_bytes} bytes")
    timeout_s = request.app[appkeys.SETTINGS_KEY].http_body_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            body = await _read_body(request, max_bytes)
    except TimeoutError:
        # The rest of the body may never come: the connection is not kept for it, nor held
        # open after the answer waiting for it (`GuardedRequestHandler.abandon_body`).
        abandon_body = getattr(request.protocol, "abandon_body", None)
        if abandon_body is not None:
            abandon_body()
        raise ApiError(
            408,
            "body_timeout",
            f"the request body did not arrive within {timeout_s:g} seconds",
            headers={"Connection": "close"},
        ) from None
    try:
        data = untrusted_json.loads(body)
    except untrusted_json.UntrustedJson as exc:
        raise ApiError(400, "invalid_json", f"the request body is refused: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "the request body must be a JSON object")
    return data


async def _read_body(request: web.Request, max_bytes: int) -> bytes:
    # Read at most one byte past the limit: a chunked body announces no length.
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(max_bytes + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(
                413, "body_too_large", f"the request body must not exceed {max_bytes} bytes"
            )
    return b"".join(chunks)


def _reject_unknown_fields(data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key in data:
        if key not in allowed:
            raise ApiError(
                422,
                "unknown_field",
                f"{printable(str(key), 40)!r} is not a field of this request "
                f"(expected: {', '.join(allowed)})",
                field=printable(str(key), 40),
            )


def _given(data: dict[str, Any], field: str) -> Any:
    value = data.get(field)
    return "" if value is None else value


def _field_code(field: str, value: Any) -> str:
    """A stable code for a refused field, so pages can say it in the visitor's language."""
    if field not in REGISTRATION_FIELDS:
        return "invalid"
    if value is None or (isinstance(value, str) and not value.strip()):
        return "required"
    if not isinstance(value, str):
        return "invalid"
    if field == "name":
        return "too_long" if len(value.strip()) > NAME_MAX else "invalid"
    if field == "email":
        return "invalid_email"
    return "unknown_language"


def attendee_ttl(event: Event, token_ttl_hours: float, now: datetime) -> timedelta:
    """How long a personal link stays valid: the configured lifetime of links, stretched
    when needed so that a link issued weeks ahead still works a week after the start."""
    return max(
        timedelta(hours=token_ttl_hours), event.starts_at_utc + ATTENDEE_LINK_AFTER_START - now
    )


def personal_link(request: web.Request, registration: Registration) -> str:
    """The whole URL that admits this registered person to the event as an attendee."""
    app = request.app
    event = app[appkeys.EVENT_KEY]
    token = app[appkeys.SIGNER_KEY].issue(
        Role.ATTENDEE,
        subject=registration.id,
        registration=registration.id,
        ttl=attendee_ttl(event, app[appkeys.SETTINGS_KEY].token_ttl_hours, datetime.now(UTC)),
    )
    return f"{app[appkeys.PUBLIC_URL_KEY]}/watch?token={token}"


def registration_body(
    request: web.Request, registration: Registration, *, created: bool
) -> dict[str, Any]:
    return {
        "registration": {
            "id": registration.id,
            "name": registration.name,
            "email": registration.email,
            "language": registration.language,
            "created_at": registration.created_at.isoformat(),
        },
        "created": created,
        "link": personal_link(request, registration),
    }


def _too_many(message: str, retry_after_s: float, field: str | None = None) -> ApiError:
    return ApiError(
        429,
        "rate_limited",
        message,
        field=field,
        headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))},
    )


def _reader_timezone(data: dict[str, Any]) -> str | None:
    """The browser's time zone, for the start time in the mail; anything unusable is
    ignored (an old browser's zone database must not stop a registration)."""
    value = data.get("timezone")
    if isinstance(value, str) and 0 < len(value) <= TIMEZONE_MAX and value.isprintable():
        return value
    return None


async def _mail_link(
    request: web.Request, registration: Registration, *, again: bool, timezone: str | None
) -> None:
    """Mail `registration` its personal link (raises `MailError`)."""
    app = request.app
    mailer = app[appkeys.MAILER_KEY]
    message = registration_letter(
        mailer,
        ui_lang=language_of(request),
        event=app[appkeys.EVENT_KEY],
        public_url=app[appkeys.PUBLIC_URL_KEY],
        name=registration.name,
        email=registration.email,
        link=personal_link(request, registration),
        timezone=timezone,
        again=again,
    )
    await mailer.send(message)


def _mail_failed() -> ApiError:
    return ApiError(
        503, "mail_failed", "the mail could not be sent; please try again in a few minutes"
    )


async def post_registration(request: web.Request) -> web.Response:
    """Register (or find again) a person; 201 when created, 200 when already registered.

    With a mail server, a new registration is confirmed by mail too, and registering an
    address again mails its link to that address instead of showing it.
    """
    app = request.app
    event = app[appkeys.EVENT_KEY]
    limits = app[appkeys.REGISTRATION_LIMITS_KEY]
    client = client_address(request)
    # Counted before the body is even read: a flood of unreadable bodies is limited too.
    try:
        await count_client_attempt(app[appkeys.STORE_KEY], client, limits)
    except RegistrationRateLimited as exc:
        raise _too_many(exc.message, exc.retry_after_s) from None
    data = await read_json_object(request)
    _reject_unknown_fields(data, (*REGISTRATION_FIELDS, "timezone"))
    try:
        registration, created = await register_attendee(
            app[appkeys.STORE_KEY],
            event_id=event.id,
            languages=event.language_codes,
            # A missing or null field is an empty one: "required", not "must be text".
            name=_given(data, "name"),
            email=_given(data, "email"),
            language=_given(data, "language"),
            client=None,  # counted above
            limits=limits,
        )
    except RegistrationRateLimited as exc:
        field = exc.field if exc.field in REGISTRATION_FIELDS else None
        raise _too_many(exc.message, exc.retry_after_s, field) from None
    except RegistrationError as exc:
        raise ApiError(
            422, _field_code(exc.field, data.get(exc.field)), exc.message, field=exc.field
        ) from None
    if created:
        app[_CREATED_COUNTER].inc()
        log.info("registration created", extra={"registration": registration.id})
    timezone = _reader_timezone(data)
    if appkeys.MAILER_KEY not in app:
        body = registration_body(request, registration, created=created)
        body["mailed"] = False
        return json_response(body, status=201 if created else 200, token=True)
    if not created:
        # Whoever typed the address may not own it: the link goes to the address only,
        # and the answer says nothing of the registration (its name, its language).
        try:
            await _mail_link(request, registration, again=True, timezone=timezone)
        except MailError as exc:
            log.warning("%s", exc)
            raise _mail_failed() from None
        return json_response(
            {
                "registration": None,
                "created": False,
                "link": None,
                "mailed": True,
                "email": registration.email,
            }
        )
    body = registration_body(request, registration, created=True)
    try:
        await _mail_link(request, registration, again=False, timezone=timezone)
        body["mailed"] = True
    except MailError as exc:
        # The person has the link on the page: the registration stands.
        log.warning("%s", exc)
        body["mailed"] = False
    return json_response(body, status=201, token=True)


async def post_registration_lookup(request: web.Request) -> web.Response:
    """Give back the personal link of a registered address (see docs/http-api.md, Privacy);
    with a mail server, mail it to that address instead."""
    app = request.app
    event = app[appkeys.EVENT_KEY]
    limits = app[appkeys.REGISTRATION_LIMITS_KEY]
    store = app[appkeys.STORE_KEY]
    # Limited like registration, so the endpoint cannot be used to test addresses in bulk.
    if not await store.hit_rate_limit(
        f"lookup:client:{client_address(request)}", limits.per_client, limits.window_s
    ):
        raise _too_many(
            "too many look-ups from your network; please try again in at most "
            f"{math.ceil(limits.window_s / 60)} minutes",
            limits.window_s,
        )
    data = await read_json_object(request)
    _reject_unknown_fields(data, ("email", "timezone"))
    raw = data.get("email")
    if not isinstance(raw, str) or not raw.strip():
        raise ApiError(422, "required", "an email address is required", field="email")
    try:
        email = normalise_email(raw)
    except ValueError as exc:
        raise ApiError(422, "invalid_email", str(exc), field="email") from None
    registration = await store.registration_by_email(event.id, email)
    if registration is not None and email_key(registration.email) != email_key(email):
        registration = None
    if appkeys.MAILER_KEY in app:
        # A mailbox is not to be flooded through this endpoint.
        if not await store.hit_rate_limit(
            f"lookup:email:{event.id}:{email_key(email)}", limits.per_email, limits.window_s
        ):
            raise _too_many(
                "too many look-ups for this address; please try again in at most "
                f"{math.ceil(limits.window_s / 60)} minutes",
                limits.window_s,
                "email",
            )
        if registration is not None:
            try:
                await _mail_link(request, registration, again=True, timezone=_reader_timezone(data))
            except MailError as exc:
                log.warning("%s", exc)
                raise _mail_failed() from None
        # The same answer whether the address is registered or not: it tells nothing.
        return json_response({"mailed": True, "email": email}, status=202)
    if registration is None:
        raise ApiError(
            404, "not_registered", "no registration was found for this address", field="email"
        )
    return json_response(registration_body(request, registration, created=False), token=True)


async def get_calendar(request: web.Request) -> web.Response:
    """The event as an iCalendar file; with an attendee's `token`, his link is in it."""
    app = request.app
    event = app[appkeys.EVENT_KEY]
    public_url = app[appkeys.PUBLIC_URL_KEY]
    ui_lang = language_of(request)
    link = None
    token = request.query.get("token")
    if token is not None:
        try:
            claims = app[appkeys.SIGNER_KEY].verify(token)
        except TokenError as exc:
            raise web.HTTPForbidden(text=f"{exc}: the calendar entry needs a valid link") from None
        if claims.role is Role.ATTENDEE:
            link = f"{public_url}/watch?token={token}"
    body = event_ics(
        event,
        ui_lang,
        public_url=public_url,
        link=link,
        description=translate(ui_lang, "mail.calendar_description", link=link) if link else "",
    )
    return web.Response(
        body=body.encode("utf-8"),
        headers={
            "Content-Type": "text/calendar; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{event.id}.ics"',
            "Cache-Control": "no-store",
        },
    )


def event_document(event: Event) -> dict[str, Any]:
    """The program as the pages read it: the model, plus the start as an instant."""
    document = event.model_dump(mode="json")
    document["starts_at_utc"] = event.starts_at_utc.isoformat().replace("+00:00", "Z")
    return document


async def get_event(request: web.Request) -> web.Response:
    return json_response(event_document(request.app[appkeys.EVENT_KEY]))


async def healthz(request: web.Request) -> web.Response:
    """200 when this node can read its store, 503 (with the reason) when it cannot."""
    app = request.app
    try:
        await app[appkeys.STORE_KEY].get_live_state(app[appkeys.EVENT_KEY].id)
    except Exception as exc:  # any failure means "not healthy"; the reason goes to the log
        log.warning("health check failed: %s", exc)
        return json_response(
            {"status": "unavailable", "store": "unreachable", "reason": type(exc).__name__},
            status=503,
        )
    return json_response({"status": "ok", "store": "ok"})


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    # Read at scrape time (other nodes register too), from a count the store keeps: the
    # cost does not grow with the registrations.
    try:
        stored = await app[appkeys.STORE_KEY].registration_count(app[appkeys.EVENT_KEY].id)
        app[_STORED_GAUGE].set(stored)
    except Exception as exc:  # a scrape must still answer when the store is down
        log.warning("cannot count registrations for /metrics: %s", exc)
    body = render(app[appkeys.METRICS_KEY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


@web.middleware
async def api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every failure under /api/ in the API's JSON shape, never with an HTML page."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError:
        raise
    except StoreError as exc:
        # The person can do nothing about it but come back: say so, keep the detail (a
        # path of the machine) for the log, and no traceback for a known condition.
        log.warning("cannot answer %s %s: %s", request.method, request.path, exc)
        why = "its disk is full" if isinstance(exc, StoreFull) else "it cannot reach its data"
        raise ApiError(
            503,
            "store_unavailable",
            f"the server cannot save anything right now ({why}); please try again in a few minutes",
            headers={"Retry-After": str(STORE_RETRY_AFTER_S)},
        ) from None
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        codes = {
            404: "not_found",
            405: "method_not_allowed",
            413: "body_too_large",
            503: "too_many_connections",  # signaling.http_connections
        }
        kept = {name: exc.headers[name] for name in ("Allow", "Retry-After") if name in exc.headers}
        raise ApiError(
            exc.status,
            codes.get(exc.status, "http_error"),
            exc.text if exc.status == 503 and exc.text else exc.reason,
            headers=kept or None,
        ) from None
    except Exception:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        raise ApiError(500, "internal_error", "the server failed; please try again") from None


def add_routes(app: web.Application) -> None:
    registry = app[appkeys.METRICS_KEY]
    app[_CREATED_COUNTER] = Counter(
        "dragoman_registrations_created",
        "Registrations created by this node.",
        registry=registry,
    )
    app[_STORED_GAUGE] = Gauge(
        "dragoman_registrations",
        "Registrations stored for the event (all nodes).",
        registry=registry,
    )
    app.router.add_get("/api/event", get_event, name="api-event")
    app.router.add_post("/api/registrations", post_registration, name="api-registrations")
    app.router.add_post(
        "/api/registrations/lookup", post_registration_lookup, name="api-registrations-lookup"
    )
    app.router.add_get("/calendar.ics", get_calendar, name="calendar")
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/metrics", metrics, name="metrics")
