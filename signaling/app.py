"""The aiohttp application of a Dragoman node: what it serves and what it shares.

`create_app(settings)` builds the application; running it (`make_runner`) is
the caller's business (`dragoman serve`, or a test fixture). The application
keeps the event, the store, the token signer, the settings and the metrics
registry under the typed keys of `signaling.appkeys` (re-exported here), and
takes *extensions*: functions called with the application before it starts,
which add routes, startup/cleanup contexts and metrics of their own (the live
service and its WebSocket route plug in this way).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence

from aiohttp import web
from prometheus_client import Counter

from signaling import http_api, pages
from signaling.appkeys import (
    EVENT_KEY,
    MAILER_KEY,
    METRICS_KEY,
    PUBLIC_URL_KEY,
    REGISTRATION_LIMITS_KEY,
    SETTINGS_KEY,
    SIGNER_KEY,
    STORE_KEY,
)
from signaling.console_pages import install_console_pages
from signaling.event_page import install_event_page
from signaling.hls_delivery import install_hls
from signaling.http_api import Handler
from signaling.http_connections import (
    NodeRunner,
    forwarded_requests_cap,
    install_connection_limits,
)
from signaling.logs import AccessLogger, suppressed_lines
from signaling.mail import Mailer
from signaling.metrics import Readings, Sample, node_registry
from signaling.program import Event, load_program
from signaling.registration import RegistrationLimits
from signaling.secret import load_or_create_secret
from signaling.security_headers import install_security_headers
from signaling.session_media import install_session_media
from signaling.settings import Settings
from signaling.store import Store, open_store
from signaling.tokens import TokenSigner
from signaling.websocket import SFU_KEY, install_live
from streamer.stats import OutputCounters

__all__ = [
    "DEFAULT_EXTENSIONS",
    "EVENT_KEY",
    "MAILER_KEY",
    "METRICS_KEY",
    "PUBLIC_URL_KEY",
    "REGISTRATION_LIMITS_KEY",
    "SETTINGS_KEY",
    "SIGNER_KEY",
    "STORE_KEY",
    "Extension",
    "create_app",
    "make_runner",
]

log = logging.getLogger(__name__)

Extension = Callable[[web.Application], None]
"""Called with the application after the core keys and routes are in place and before
it starts: may add routes, `on_startup` / `cleanup_ctx` entries and metrics. Cleanup
contexts added by an extension are torn down before the store is closed."""


def install_streamer_metrics(app: web.Application) -> None:
    """Publish the streamer's counters on /metrics (needs `install_live` before it).

    Read at scrape time from numbers the streamer keeps as packets pass: one step per
    output, whatever the number of subscribers."""
    if SFU_KEY not in app:
        return
    sfu = app[SFU_KEY]
    registry = app[METRICS_KEY]
    labels = ("output", "kind")

    def outputs(read: Callable[[bool, OutputCounters], float]) -> Callable[[], list[Sample]]:
        return lambda: [
            ({"output": name, "kind": kind}, read(live, counters))
            for name, kind, live, counters in sfu.output_counters()
        ]

    registry.register(
        Readings(
            "dragoman_streamer_publishers",
            "Peers publishing media to this node.",
            lambda: sfu.publisher_count,
        )
    )
    registry.register(
        Readings(
            "dragoman_streamer_subscribers",
            "Peers receiving media from this node.",
            lambda: sfu.subscriber_count,
        )
    )
    registry.register(
        Readings(
            "dragoman_streamer_output_live",
            "1 when the output is fed by a source, 0 when it is silent or black.",
            outputs(lambda live, _: float(live)),
            labels=labels,
        )
    )
    for field, what in (
        ("packets", "RTP packets forwarded into each output."),
        ("bytes", "RTP bytes forwarded into each output."),
        ("switches", "Times each output was re-pointed to another source."),
    ):
        registry.register(
            Readings(
                f"dragoman_streamer_output_{field}_total",
                what,
                outputs(lambda _, counters, field=field: getattr(counters, field)),
                kind="counter",
                labels=labels,
            )
        )
    registry.register(
        Readings(
            "dragoman_streamer_departed_collections_total",
            "Garbage collections run to free the peer connections of departed clients.",
            lambda: sfu.departed.collections,
            kind="counter",
        )
    )
    registry.register(
        Readings(
            "dragoman_streamer_departed_collection_seconds_total",
            "Time those collections held the event loop.",
            lambda: sfu.departed.pause_s,
            kind="counter",
        )
    )
    registry.register(
        Readings(
            "dragoman_streamer_forwarding_errors_total",
            "Received packets whose forwarding failed unexpectedly (the first is logged).",
            lambda: sfu.errors.forwarding,
            kind="counter",
        )
    )
    registry.register(
        Readings(
            "dragoman_streamer_rtcp_errors_total",
            "Subscribers' RTCP packets whose handling failed unexpectedly (the first is logged).",
            lambda: sfu.errors.rtcp,
            kind="counter",
        )
    )


#: Extensions every node runs unless told otherwise: the live event service with its
#: streamer and WebSocket, the session's recordings and HLS, the consoles' pages, and
#: the streamer's metrics.
DEFAULT_EXTENSIONS: tuple[Extension, ...] = (
    install_live,
    install_session_media,
    install_hls,
    install_console_pages,
    install_streamer_metrics,
)

_REQUESTS_KEY = web.AppKey("http_requests", Counter)
_OWNS_STORE_KEY = web.AppKey("owns_store", bool)


def create_app(
    settings: Settings,
    *,
    event: Event | None = None,
    store: Store | None = None,
    registration_limits: RegistrationLimits | None = None,
    extensions: Sequence[Extension] | None = None,
) -> web.Application:
    """The application for one node.

    `event` defaults to the program in `settings.event_file` (raises `ProgramError`),
    `store` to the one the settings select (`open_store`); a store created here is
    opened at startup and closed at cleanup, a store passed in is opened if it is not
    yet and left open (its owner closes it). `extensions` default to
    `DEFAULT_EXTENSIONS`.
    """
    if event is None:
        event = load_program(settings.event_file)
    app = web.Application(
        middlewares=[_count_requests, http_api.api_errors, forwarded_requests_cap]
    )
    install_security_headers(app, settings)
    install_connection_limits(app)
    app[SETTINGS_KEY] = settings
    app[EVENT_KEY] = event
    app[_OWNS_STORE_KEY] = store is None
    app[STORE_KEY] = store if store is not None else open_store(settings)
    app[SIGNER_KEY] = TokenSigner(load_or_create_secret(settings))
    app[PUBLIC_URL_KEY] = str(settings.public_url).rstrip("/")
    app[REGISTRATION_LIMITS_KEY] = registration_limits or RegistrationLimits(
        per_client=settings.registrations_per_client,
        per_email=settings.registrations_per_email,
        window_s=settings.registration_window_s,
    )
    if settings.smtp_url is not None and settings.mail_from is not None:
        app[MAILER_KEY] = Mailer(
            settings.smtp_url.get_secret_value(), settings.mail_from, ca_file=settings.smtp_ca_file
        )
    registry = node_registry()
    app[METRICS_KEY] = registry
    app[_REQUESTS_KEY] = Counter(
        "dragoman_http_requests",
        "HTTP requests answered, by route, method and status.",
        ("route", "method", "status"),
        registry=registry,
    )
    registry.register(
        Readings(
            "dragoman_log_lines_suppressed",
            "Log lines this process did not write: repeats past the flood limit (each "
            "window's count is written in one line when it ends).",
            suppressed_lines,
            kind="counter",
        )
    )
    app.cleanup_ctx.append(_store_context)
    http_api.add_routes(app)
    pages.add_routes(app)
    install_event_page(app)
    for extension in DEFAULT_EXTENSIONS if extensions is None else extensions:
        extension(app)
    return app


async def _store_context(app: web.Application) -> AsyncIterator[None]:
    store = app[STORE_KEY]
    await store.open()
    log.info("store open", extra={"store": type(store).__name__})
    try:
        yield
    finally:
        if app[_OWNS_STORE_KEY]:
            await store.close()


def make_runner(app: web.Application) -> web.AppRunner:
    """A runner whose access log never shows a token (see `signaling.logs`), with the
    node's keep-alive, header deadline and per-address cap (`signaling.http_connections`)."""
    return NodeRunner(app, access_log_class=AccessLogger)


def _route_label(request: web.Request) -> str:
    # The route template, not the path: paths carry ids and would explode the label set.
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def _count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    counter = request.app[_REQUESTS_KEY]
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        counter.labels(_route_label(request), request.method, str(exc.status)).inc()
        raise
    except Exception:
        counter.labels(_route_label(request), request.method, "500").inc()
        raise
    counter.labels(_route_label(request), request.method, str(response.status)).inc()
    return response
