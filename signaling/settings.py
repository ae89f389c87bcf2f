"""Settings of a Dragoman node: every one has a ``DRAGOMAN_*`` environment variable, and
``serve`` and the CLI read the same ones (flags only override them)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from yarl import URL

SEED_EVENT = Path("config") / "events" / "shared-historical-memory.yaml"


def default_event_file() -> Path:
    """The seed program of the checkout this package runs from (an editable install
    keeps the package in the checkout), else the same path under the working directory."""
    in_checkout = Path(__file__).resolve().parent.parent / SEED_EVENT
    return in_checkout if in_checkout.is_file() else SEED_EVENT


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
    #: STUN/TURN URLs handed to every peer; none by default (no third party is contacted).
    #: In the environment: a comma-separated list or a JSON list.
    ice_servers: Annotated[list[str], NoDecode] = []
    #: The address to announce in ICE candidates when the node is behind NAT.
    ice_public_address: str | None = None
    #: Signs every link. Unset: generated once and kept in ``data_dir/secret.key``.
    #: Several nodes must share one: set it on all of them.
    secret: SecretStr | None = None
    token_ttl_hours: float = Field(default=24 * 30, gt=0)
    #: Registration attempts accepted per client address and per email address within
    #: ``registration_window_s`` seconds; the rest get 429.
    registrations_per_client: int = Field(default=10, ge=1)
    registrations_per_email: int = Field(default=5, ge=1)
    registration_window_s: float = Field(default=600.0, gt=0)
    #: ``auto``: JSON lines unless the output is a terminal.
    log_format: Literal["auto", "json", "text"] = "auto"
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

    @field_validator("ice_servers", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ValueError(
                        f"starts with '[' but is not a JSON list of URLs ({exc.msg} at "
                        f"character {exc.pos + 1}); or give the URLs separated by commas"
                    ) from None
            return [url.strip() for url in text.split(",") if url.strip()]
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
