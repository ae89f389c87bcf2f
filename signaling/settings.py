"""Settings of a Dragoman node: every one has a ``DRAGOMAN_*`` environment variable, and
``serve`` and the CLI read the same ones (flags only override them)."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from yarl import URL

from signaling.mail import check_sender, parse_smtp_url

SEED_EVENT = Path("config") / "events" / "shared-historical-memory.yaml"


def default_event_file() -> Path:
    """The seed program of the checkout this package runs from (an editable install
    keeps the package in the checkout), else the same path under the working directory."""
    in_checkout = Path(__file__).resolve().parent.parent / SEED_EVENT
    return in_checkout if in_checkout.is_file() else SEED_EVENT


#: Ports below this one need root; a node never should.
LOWEST_RTC_PORT = 1024
_PORT_RANGE = re.compile(r"(\d{1,5})-(\d{1,5})")
_PORT = re.compile(r"[0-9]{1,5}")
_ICE_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")
_TURN_URL = re.compile(
    r"(?P<scheme>turns?):(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?"
    r"(?:\?transport=(?P<transport>[^&]*))?"
)


class IceServer(BaseModel):
    """One entry of ``DRAGOMAN_ICE_SERVERS``, as browsers take it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: tuple[str, ...]
    username: str | None = None
    # Handed to every page as it is; kept out of reprs all the same.
    credential: str | None = Field(default=None, repr=False)


class SettingsError(Exception):
    """Settings that cannot be used; ``problems`` has one line per setting, naming its
    environment variable and never its value."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(problems)

    def __str__(self) -> str:
        return "invalid settings:\n" + "\n".join(f"  - {problem}" for problem in self.problems)


class Settings(BaseSettings):
    """One node's settings; see docs/operations.md for how to use each."""

    # Inputs stay out of error reports: one of them may be the secret.
    model_config = SettingsConfigDict(
        env_prefix="DRAGOMAN_", extra="forbid", hide_input_in_errors=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    #: The URL attendees and staff open; links are built from it.
    #: Default: ``http://{host}:{port}`` (``localhost`` when listening on every interface).
    public_url: str | None = None
    data_dir: Path = Path("data")
    event_file: Path = Field(default_factory=default_event_file)
    #: When set, state lives in Redis (needed for several nodes); else SQLite in data_dir.
    redis_url: str | None = None
    #: STUN/TURN servers handed to every page (and used by the node); none by default (no
    #: third party is contacted). In the environment: URLs separated by commas, or a JSON
    #: list of URLs and ``{"urls": ..., "username": ..., "credential": ...}`` objects.
    ice_servers: Annotated[list[IceServer], NoDecode] = []
    #: The address to announce in ICE candidates when the node is behind NAT.
    ice_public_address: str | None = None
    #: ``MIN-MAX``: the UDP ports every media connection of the node uses (open them in the
    #: firewall). Unset: any port the system gives.
    rtc_ports: Annotated[tuple[int, int] | None, NoDecode] = None
    #: IP addresses (comma-separated) the node offers media on. Empty: every non-loopback
    #: interface.
    rtc_addresses: Annotated[list[str], NoDecode] = []
    #: With several nodes (``redis_url``): the IP address other nodes send this node's
    #: media link to (UDP, one port of ``rtc_ports``). Unset: the first of
    #: ``rtc_addresses``, else 127.0.0.1 (nodes on one machine).
    link_host: str | None = None
    #: The UDP port of that link (a port a NAT or a container's published port forwards
    #: to). Unset: one of ``rtc_ports``, else any free port.
    link_port: int | None = Field(default=None, ge=LOWEST_RTC_PORT, le=65535)
    #: With several nodes, when the other nodes do not reach ``link_host`` itself (a 1:1
    #: NAT, a container's published port): the address they send this node's media link
    #: to, ``IP`` or ``IP:PORT`` (``[IPv6]:PORT``); without a port, the port bound is
    #: announced (a NAT that keeps ports). Unset: ``link_host`` as it is bound.
    link_public_address: Annotated[tuple[str, int | None] | None, NoDecode] = None
    #: Processes serving the event on this machine behind the one port (``auto``: one
    #: per core); each is a node of the event (see signaling/workers.py).
    workers: Annotated[int, NoDecode] = 1
    #: The TURN server(s) pages may relay media through (``turn:``/``turns:`` URLs,
    #: comma-separated); each page gets short-lived credentials made with ``turn_secret``.
    turn_urls: Annotated[list[str], NoDecode] = []
    #: The TURN server's ``static-auth-secret`` (coturn's TURN REST API scheme).
    turn_secret: SecretStr | None = None
    #: How long the TURN credentials a page receives stay valid.
    turn_ttl_s: int = Field(default=24 * 3600, ge=60)
    #: Signs every link. Unset: generated once and kept in ``data_dir/secret.key``.
    #: Several nodes must share one: set it on all of them.
    secret: SecretStr | None = None
    #: The shortest validity of an attendee's personal link (it also lasts until a week
    #: after the event starts).
    token_ttl_hours: float = Field(default=24 * 30, gt=0)
    #: Staff links are valid until the end of the event's day (in its time zone) plus this
    #: many hours, unless ``dragoman invite --ttl-hours`` says otherwise.
    staff_link_margin_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    #: Registration attempts accepted per client address and per email address within
    #: ``registration_window_s`` seconds; the rest get 429.
    #: The client limit must let a venue's whole office or campus (one address behind its
    #: NAT) register; the per-address limit is the strict one.
    registrations_per_client: int = Field(default=100, ge=1)
    registrations_per_email: int = Field(default=5, ge=1)
    registration_window_s: float = Field(default=600.0, gt=0)
    #: The SMTP server that sends registration confirmations and links:
    #: ``smtps://[user:password@]host[:port]`` (TLS from the start, port 465 by default),
    #: ``smtp://…`` (STARTTLS required, port 587) or ``smtp+plain://…`` (no encryption:
    #: only for a relay on the same machine or network). Unset: no mail is sent.
    #: A secret: it may carry the password.
    smtp_url: SecretStr | None = None
    #: The sender of those mails, ``Name <address>`` or an address.
    mail_from: str | None = None
    #: A PEM file of certificate authorities to trust for the SMTP server (default: the
    #: system's).
    smtp_ca_file: Path | None = None
    #: Seconds an interpreted channel may stay near-silent while the floor speaks before
    #: the moderator and the booth are warned (dead air).
    dead_air_s: float = Field(default=5.0, gt=0, le=3600)
    #: ``auto``: JSON lines unless the output is a terminal.
    log_format: Literal["auto", "json", "text"] = "auto"
    #: Seconds over which a kind of log line a client can trigger at will (a refusal, a
    #: warning) passes a few times; the rest is counted in one line per interval.
    log_repeat_interval_s: float = Field(default=10.0, gt=0, le=86400)
    #: PEM certificate (chain) and private key: both set, the node serves HTTPS and WSS
    #: itself. Checked by `signaling.tls` before anything starts.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Origins, besides the public URL's, whose pages may open the WebSocket
    #: (``scheme://host[:port]``). In the environment: comma-separated.
    allowed_origins: Annotated[list[str], NoDecode] = []
    #: Reverse proxies (addresses or networks) whose ``X-Forwarded-For`` names the client.
    #: In the environment: comma-separated. Default none: the header is ignored.
    trusted_proxies: Annotated[list[ipaddress.IPv4Network | ipaddress.IPv6Network], NoDecode] = []
    #: HLS (``/hls/index.m3u8``) without tokens, so that an HTTP cache or CDN in front of
    #: the node can serve it to any audience. Default: the attendee's token is required.
    hls_public: bool = False
    #: How ``/watch`` receives the event: ``webrtc`` (falling back to HLS by itself when
    #: WebRTC cannot connect) or ``hls`` for everyone.
    delivery: Literal["webrtc", "hls"] = "webrtc"
    #: Seconds ``/watch`` gives its WebRTC connection to connect, after the node's offer,
    #: before it plays HLS instead (with ``delivery`` ``webrtc``).
    webrtc_fallback_s: float = Field(default=10.0, gt=0, le=600)
    # --- HTTP connections (signaling/http_connections.py, docs/operations.md) ---
    #: Seconds an idle HTTP connection is kept open between requests (aiohttp's run_app
    #: default).
    http_keepalive_s: float = Field(default=75.0, gt=0, le=3600)
    #: Seconds a client has to send a request's complete headers, from the connection's
    #: opening or the request's first byte (nginx's client_header_timeout); then closed.
    http_header_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    #: Seconds a client has to send a request body the node reads (nginx's
    #: client_body_timeout); then 408 and the connection is closed.
    http_body_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    #: Concurrent connections from one client address (an IPv6 client: its /64); the
    #: next is answered 503 and closed. Behind trusted proxies, the concurrent requests
    #: (WebSockets included) of one forwarded address.
    http_connections_per_address: int = Field(default=256, ge=1)
    # --- the WebSocket's limits (signaling/websocket.py, docs/protocol.md) -----------------
    #: Open ``/ws`` connections one link may hold on a node (the same attendee link in
    #: several tabs; a reload briefly holds two).
    ws_connections_per_link: int = Field(default=5, ge=1)
    #: Open ``/ws`` connections per client address on a node, authenticated or not. A
    #: group watching from behind one address (an office, a campus) needs one each.
    ws_connections_per_address: int = Field(default=100, ge=1)
    #: Messages per second one connection may send, sustained, and at once (burst).
    ws_messages_per_s: float = Field(default=20.0, gt=0)
    ws_message_burst: int = Field(default=40, ge=1)
    #: New ``/ws`` connections one client address may open on a node: at once (burst), then
    #: per second (signaling/connection_rate.py). A venue of a hundred people behind one
    #: address joining within a minute stays within the burst.
    ws_new_connection_burst: int = Field(default=100, ge=1)
    ws_new_connections_per_s: float = Field(default=2.0, gt=0)
    #: Connections from one client address refused before their welcome for what they sent
    #: (junk, a bad or expired link, silence): at once, then per second; past it the
    #: address opens no new connection until the allowance refills.
    ws_auth_failure_burst: int = Field(default=30, ge=1)
    ws_auth_failures_per_s: float = Field(default=0.5, gt=0)
    #: Seconds a subscription offer waits for the page's answer before it is withdrawn
    #: and its sockets freed.
    subscribe_answer_timeout_s: float = Field(default=15.0, gt=0, le=600)
    # --- end of the WebSocket's limits ------------------------------------------------
    #: The video codec asked of speakers' browsers that offer both: ``h264`` lets HLS and
    #: the program recording take the picture as sent (no decoding); ``vp8`` is encoded
    #: once for HLS. The other codec is still accepted from a browser that cannot send it.
    video_codec: Literal["vp8", "h264"] = "h264"

    @field_validator("ice_servers", mode="before")
    @classmethod
    def _ice_server_entries(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ValueError(
                        f"starts with '[' but is not a JSON list of URLs ({exc.msg} at "
                        f"character {exc.pos + 1}); or give the URLs separated by commas"
                    ) from None
            else:
                value = [url.strip() for url in text.split(",") if url.strip()]
        if not isinstance(value, list):
            return value
        return [_ice_server(entry, number) for number, entry in enumerate(value, start=1)]

    @field_validator("rtc_ports", mode="before")
    @classmethod
    def _port_range(cls, value: object) -> object:
        if isinstance(value, str):
            match = _PORT_RANGE.fullmatch(value.strip())
            if match is None:
                raise ValueError(
                    f"should be two port numbers joined by a dash, like 40000-40999, "
                    f"not {value.strip()[:40]!r}"
                )
            value = (int(match[1]), int(match[2]))
        return value

    @field_validator("rtc_ports")
    @classmethod
    def _usable_ports(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is None:
            return None
        first, last = value
        if not (LOWEST_RTC_PORT <= first <= 65535 and LOWEST_RTC_PORT <= last <= 65535):
            raise ValueError(
                f"ports must be from {LOWEST_RTC_PORT} to 65535 (lower ones need root), "
                f"not {first}-{last}"
            )
        if first > last:
            raise ValueError(f"the first port ({first}) is above the last ({last})")
        return value

    @field_validator("workers", mode="before")
    @classmethod
    def _count_workers(cls, value: object) -> object:
        if value is None:
            return 1
        if isinstance(value, str):
            text = value.strip().lower()
            if text == "auto":
                return os.cpu_count() or 1
            if not text.isdigit() or int(text) < 1:
                raise ValueError(f"{value!r} is not a number of workers (1, 2, ... or auto)")
            return int(text)
        return value

    @field_validator("rtc_addresses", mode="before")
    @classmethod
    def _split_addresses(cls, value: object) -> object:
        if isinstance(value, str):
            return [address.strip() for address in value.split(",") if address.strip()]
        return value

    @field_validator("rtc_addresses")
    @classmethod
    def _ip_addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(
                    f"{address[:60]!r} is not an IP address; give the addresses of the "
                    "node's interfaces (like 192.0.2.10), separated by commas"
                ) from None
        return value

    @field_validator("link_public_address", mode="before")
    @classmethod
    def _link_public_address(cls, value: object) -> object:
        if isinstance(value, str):
            # Empty is unset, as a compose file's ``${VARIABLE:-}`` gives it.
            return parse_link_address(value) if value.strip() else None
        return value

    @field_validator("turn_urls", mode="before")
    @classmethod
    def _split_turn_urls(cls, value: object) -> object:
        if isinstance(value, str):
            return [url.strip() for url in value.split(",") if url.strip()]
        return value

    @field_validator("turn_urls")
    @classmethod
    def _turn_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            _check_turn_url(url)
        return value

    @field_validator("turn_secret")
    @classmethod
    def _turn_secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        # Every page sees a username and its credential: a short secret can be found
        # from one pair offline, and then anyone can use the TURN server.
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("the TURN secret must be at least 32 characters long")
        return value

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            return value
        return [parse_origin(str(item)) for item in value]

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            return value
        networks = []
        for item in value:
            try:
                # strict=False: "10.0.0.1/8" means the network 10.0.0.0/8, as people write it.
                networks.append(ipaddress.ip_network(str(item).strip(), strict=False))
            except ValueError:
                raise ValueError(
                    f"{str(item)[:60]!r} is not an IP address or network "
                    "(e.g. 10.0.0.5 or 10.0.0.0/8); separate several with commas"
                ) from None
        return networks

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        # A short secret makes every link guessable offline; refuse it rather than warn.
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("the secret must be at least 32 characters long")
        return value

    @field_validator("public_url")
    @classmethod
    def _no_trailing_slash(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("the public URL must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        # Half a pair is a mistake, not a choice: serving plain HTTP instead would hide it.
        if (self.tls_cert is None) != (self.tls_key is None):
            given, missing = (
                ("tls_cert", "tls_key") if self.tls_key is None else ("tls_key", "tls_cert")
            )
            raise ValueError(
                f"DRAGOMAN_{given.upper()} (--{given.replace('_', '-')}) is set but "
                f"DRAGOMAN_{missing.upper()} (--{missing.replace('_', '-')}) is not: "
                "give both the certificate and its private key, or neither"
            )
        return self

    @model_validator(mode="after")
    def _turn_urls_and_secret_together(self) -> Settings:
        if self.turn_urls and self.turn_secret is None:
            raise ValueError(
                "DRAGOMAN_TURN_URLS is set but DRAGOMAN_TURN_SECRET is not: pages get TURN "
                "credentials made with the TURN server's static-auth-secret"
            )
        if self.turn_secret is not None and not self.turn_urls:
            raise ValueError(
                "DRAGOMAN_TURN_SECRET is set but DRAGOMAN_TURN_URLS is not: name the TURN "
                "server(s) the credentials are for"
            )
        return self

    @model_validator(mode="after")
    def _link_settings_fit(self) -> Settings:
        given = [
            f"DRAGOMAN_{name.upper()}"
            for name in ("link_port", "link_public_address")
            if getattr(self, name) is not None
        ]
        if given and not self.redis_url:
            raise ValueError(
                f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} set but "
                "DRAGOMAN_REDIS_URL is not: only nodes sharing a Redis link to other "
                "machines (the workers of one machine link on 127.0.0.1)"
            )
        if self.workers == 1:
            return self
        if self.link_port is not None:
            raise ValueError(
                f"DRAGOMAN_LINK_PORT is set ({self.link_port}) but DRAGOMAN_WORKERS starts "
                f"{self.workers} nodes, which cannot all bind it: leave it unset (each "
                "worker's link then takes a port of its share of DRAGOMAN_RTC_PORTS)"
            )
        if self.link_public_address is not None and self.link_public_address[1] is not None:
            host, port = self.link_public_address
            raise ValueError(
                f"DRAGOMAN_LINK_PUBLIC_ADDRESS names one port ({port}) but "
                f"DRAGOMAN_WORKERS starts {self.workers} nodes, each with a link port of "
                f"its own: give the address alone ({host}) and forward the ports as they are"
            )
        return self

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_smtp_url(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _mail_needs_a_sender(self) -> Settings:
        if self.smtp_url is not None and not self.mail_from:
            raise ValueError(
                "DRAGOMAN_SMTP_URL is set but DRAGOMAN_MAIL_FROM is not: say who the "
                "mails come from (e.g. Events <events@example.org>)"
            )
        if self.mail_from is not None:
            check_sender(self.mail_from)
        return self

    @model_validator(mode="after")
    def _derive_public_url(self) -> Settings:
        if self.public_url is None:
            host = "localhost" if self.host in {"0.0.0.0", "::", ""} else self.host
            if ":" in host:
                host = f"[{host}]"
            self.public_url = f"{'https' if self.tls else 'http'}://{host}:{self.port}"
        return self

    @property
    def tls(self) -> bool:
        """Whether this node serves HTTPS and WSS itself."""
        return self.tls_cert is not None and self.tls_key is not None

    @property
    def public_origin(self) -> str:
        """The origin (``scheme://host[:port]``) of the public URL."""
        return origin_of(URL(str(self.public_url)))


def parse_origin(text: str) -> str:
    """``scheme://host[:port]`` normalised as browsers send it in ``Origin`` (lower case,
    default port left out); ``ValueError`` saying what is wrong otherwise."""
    shown = text[:80]
    try:
        url = URL(text.strip())
    except ValueError:
        raise ValueError(f"{shown!r} is not an origin like https://events.example.org") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(
            f"{shown!r} is not an origin: write scheme://host[:port], "
            "e.g. https://events.example.org"
        )
    if url.raw_path not in ("", "/") or url.raw_query_string or url.raw_fragment or url.user:
        raise ValueError(
            f"{shown!r} is not an origin: only scheme://host[:port], without a path, query or user"
        )
    return origin_of(url)


def origin_of(url: URL) -> str:
    """The origin of an absolute URL as a browser writes it: default port left out."""
    host = (url.raw_host or "").lower()
    if ":" in host:
        host = f"[{host}]"
    origin = f"{url.scheme.lower()}://{host}"
    return origin if url.is_default_port() else f"{origin}:{url.port}"


_LINK_ADDRESS_EXAMPLE = "like 203.0.113.7, 203.0.113.7:40000 or [2001:db8::7]:40000"


def parse_link_address(text: str) -> tuple[str, int | None]:
    """``IP``, ``IP:PORT`` or ``[IPv6]:PORT`` as (ip, port or None); ``ValueError`` saying
    what is wrong, with the text as given."""
    shown = text.strip()[:80]
    host, port_text = text.strip(), None
    if host.startswith("["):
        inside, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{shown!r} is not an address {_LINK_ADDRESS_EXAMPLE}")
        host, port_text = inside, rest[1:] if rest else None
    elif host.count(":") == 1:
        host, _, port_text = host.partition(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"{shown!r} is not an IP address, optionally with a port, "
            f"{_LINK_ADDRESS_EXAMPLE} (not a host name: nodes pull from an IP address)"
        ) from None
    if address.is_unspecified:
        raise ValueError(
            f"{shown!r} is the wildcard address, which names no machine: give the address "
            "the other nodes send to (the wildcard may be bound: DRAGOMAN_LINK_HOST)"
        )
    if address.is_multicast:
        raise ValueError(f"{shown!r} is a multicast address, not one machine's")
    if port_text is None:
        return str(address), None
    if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{shown!r}: the port must be a number from 1 to 65535")
    return str(address), int(port_text)


def _ice_server(entry: object, number: int) -> IceServer:
    """One ``DRAGOMAN_ICE_SERVERS`` entry, or a ValueError saying which and why."""
    where = f"entry {number}"
    if isinstance(entry, IceServer):
        return entry
    if isinstance(entry, str):
        entry = {"urls": entry}
    if not isinstance(entry, dict):
        raise ValueError(f"{where} should be a URL or an object with urls, not {entry!r:.40}")
    unknown = sorted(set(entry) - {"urls", "username", "credential"})
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown}; known: urls, username, credential")
    urls = entry.get("urls")
    if isinstance(urls, str):
        urls = [urls]
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise ValueError(f"{where} needs urls: one URL or a list of URLs")
    for url in urls:
        if not url.startswith(_ICE_SCHEMES):
            raise ValueError(
                f"{where}: {url[:60]!r} should start with stun:, stuns:, turn: or turns:"
            )
    username, credential = entry.get("username"), entry.get("credential")
    for name, field_value in (("username", username), ("credential", credential)):
        if field_value is not None and not isinstance(field_value, str):
            raise ValueError(f"{where}: {name} should be text")
    needs_login = any(url.startswith(("turn:", "turns:")) for url in urls)
    if needs_login and (not username or not credential):
        # Browsers refuse to build a peer connection from a TURN server without them.
        raise ValueError(
            f"{where}: a TURN server needs a username and a credential (JSON form: "
            '[{"urls": "turn:...", "username": "...", "credential": "..."}]), or set '
            "DRAGOMAN_TURN_URLS and DRAGOMAN_TURN_SECRET for short-lived credentials"
        )
    return IceServer(urls=tuple(urls), username=username, credential=credential)


def _check_turn_url(url: str) -> None:
    match = _TURN_URL.fullmatch(url)
    if match is None:
        raise ValueError(
            f"{url[:80]!r} is not a TURN URL; write turn:HOST[:PORT] or turns:HOST[:PORT], "
            "optionally followed by ?transport=udp or ?transport=tcp"
        )
    port, transport = match["port"], match["transport"]
    if port is not None and not 1 <= int(port) <= 65535:
        raise ValueError(f"{url[:80]!r}: the port must be from 1 to 65535")
    if transport is not None and transport not in ("udp", "tcp"):
        raise ValueError(f"{url[:80]!r}: the transport must be udp or tcp, not {transport[:20]!r}")
    if match["scheme"] == "turns" and transport == "udp":
        raise ValueError(f"{url[:80]!r}: turns: is TURN over TLS, which runs on TCP, not UDP")


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, ``overrides`` (command-line flags; ``None`` means
    "not given") winning; raises ``SettingsError`` with readable lines."""
    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        return Settings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else ""
            message = str(error["msg"]).removeprefix("Value error, ")
            message = message.replace("Input should be", "should be")
            if error["type"] == "extra_forbidden":
                message = "unknown setting"
            where = f"{name} (DRAGOMAN_{name.upper()})" if name else "settings"
            problems.append(f"{where}: {message}")
        raise SettingsError(problems) from None
