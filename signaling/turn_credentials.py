"""Short-lived TURN credentials for pages, and the ICE servers each page is handed.

A page behind a firewall that lets no UDP through reaches the node via a TURN server
(coturn). Rather than one long-lived password every page could pass on, each page gets
its own credentials by the TURN REST API scheme (coturn's ``use-auth-secret``): the
username is ``<unix expiry>:<tag>`` and the credential is base64(HMAC-SHA1(secret,
username)). The TURN server holds the same secret, recomputes the credential and refuses
it after the expiry. The tag is the page's role: it tells the TURN server's logs what
kind of page relayed without saying who. The secret itself never leaves the node.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pydantic import SecretStr

from signaling import protocol as p
from signaling.settings import IceServer, Settings


@dataclass(frozen=True)
class TurnCredentials:
    username: str
    credential: str


def turn_credentials(secret: str, tag: str, ttl_s: int, now: float) -> TurnCredentials:
    """Credentials valid for `ttl_s` seconds from `now` on a TURN server sharing `secret`."""
    username = f"{int(now) + ttl_s}:{tag}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredentials(username=username, credential=base64.b64encode(digest).decode("ascii"))


@dataclass(frozen=True)
class PageIceServers:
    """What a page's ``welcome`` lists for its peer connections."""

    #: ``DRAGOMAN_ICE_SERVERS``: the same for every page.
    configured: Sequence[IceServer] = ()
    turn_urls: Sequence[str] = ()
    turn_secret: SecretStr | None = None
    turn_ttl_s: int = 24 * 3600
    clock: Callable[[], float] = field(default=time.time, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> PageIceServers:
        return cls(
            configured=tuple(settings.ice_servers),
            turn_urls=tuple(settings.turn_urls),
            turn_secret=settings.turn_secret,
            turn_ttl_s=settings.turn_ttl_s,
        )

    def for_page(self, tag: str) -> list[p.IceServer]:
        """The ICE servers of one page; TURN credentials are made afresh for it."""
        servers = [
            p.IceServer(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in self.configured
        ]
        if self.turn_urls and self.turn_secret is not None:
            made = turn_credentials(
                self.turn_secret.get_secret_value(), tag, self.turn_ttl_s, self.clock()
            )
            servers.append(
                p.IceServer(
                    urls=list(self.turn_urls), username=made.username, credential=made.credential
                )
            )
        return servers
