"""The typed keys under which the application keeps what every part of a node shares.

Anything added to the aiohttp application (the live service, the WebSocket
route) reads the event, the store, the token signer, the settings and the
metrics registry through these keys, e.g. `request.app[STORE_KEY]`.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry

from signaling.mail import Mailer
from signaling.program import Event
from signaling.registration import RegistrationLimits
from signaling.settings import Settings
from signaling.store import Store
from signaling.tokens import TokenSigner

SETTINGS_KEY = web.AppKey("settings", Settings)
EVENT_KEY = web.AppKey("event", Event)
STORE_KEY = web.AppKey("store", Store)
SIGNER_KEY = web.AppKey("signer", TokenSigner)
METRICS_KEY = web.AppKey("metrics", CollectorRegistry)
#: The public base URL without a trailing slash; links are built on it.
PUBLIC_URL_KEY = web.AppKey("public_url", str)
REGISTRATION_LIMITS_KEY = web.AppKey("registration_limits", RegistrationLimits)
#: Sends the registration mails; absent when no SMTP server is configured.
MAILER_KEY = web.AppKey("mailer", Mailer)
