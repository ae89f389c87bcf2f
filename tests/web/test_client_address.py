"""The client address behind trusted proxies: believed from `DRAGOMAN_TRUSTED_PROXIES`
only, read from the right of `X-Forwarded-For`, and used by the registration limits and
the access log alike."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any

import aiohttp
import pytest

from signaling.client_address import forwarded_client
from signaling.registration import RegistrationLimits
from signaling.settings import SettingsError, load_settings
from tests.support.server import StartServer, dragoman, dragoman_env, free_port

PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8:1::/48")]


@pytest.mark.parametrize(
    ("peer", "headers", "client"),
    [
        # No proxy in between: the peer, whatever it claims.
        ("198.51.100.7", ["203.0.113.9"], "198.51.100.7"),
        ("198.51.100.7", [], "198.51.100.7"),
        # One trusted proxy: the address it appended.
        ("10.0.0.2", ["203.0.113.9"], "203.0.113.9"),
        # A client's own forged entries are left of the proxy's: not believed.
        ("10.0.0.2", ["1.1.1.1, 2.2.2.2, 203.0.113.9"], "203.0.113.9"),
        # A chain of trusted proxies: the first untrusted address from the right.
        ("10.0.0.2", ["203.0.113.9, 10.1.1.1, 10.2.2.2"], "203.0.113.9"),
        ("10.0.0.2", ["1.1.1.1, 203.0.113.9", "10.1.1.1"], "203.0.113.9"),  # two headers
        # Only trusted proxies in the chain: the farthest of them.
        ("10.0.0.2", ["10.3.3.3, 10.1.1.1"], "10.3.3.3"),
        # A proxy that passed on nothing: the proxy itself.
        ("10.0.0.2", [], "10.0.0.2"),
        ("10.0.0.2", [""], "10.0.0.2"),
        # Garbage stops the walk: nothing left of it is believed.
        ("10.0.0.2", ["203.0.113.9, unknown"], "10.0.0.2"),
        ("10.0.0.2", ["1.1.1.1, <script>, 10.1.1.1"], "10.1.1.1"),
        ("10.0.0.2", ["999.1.1.1"], "10.0.0.2"),
        # Ports and brackets some proxies add; IPv6; IPv4 as a dual-stack socket shows it.
        ("10.0.0.2", ["203.0.113.9:51234"], "203.0.113.9"),
        ("10.0.0.2", ["[2001:db8:2::5]:443"], "2001:db8:2::5"),
        ("2001:db8:1::1", ["2001:db8:2::5"], "2001:db8:2::5"),
        ("::ffff:10.0.0.2", ["203.0.113.9"], "203.0.113.9"),
        ("::ffff:10.0.0.2", ["::ffff:203.0.113.9"], "203.0.113.9"),
        # A peer aiohttp could not name.
        (None, ["203.0.113.9"], "unknown"),
    ],
)
def test_forwarded_client(peer: str | None, headers: list[str], client: str) -> None:
    assert forwarded_client(peer, headers, PROXIES) == client


def test_trusted_proxies_setting_takes_addresses_and_networks() -> None:
    settings = load_settings(trusted_proxies=" 127.0.0.1, 10.0.0.0/8,::1 , fd00::/8 ")
    assert [str(network) for network in settings.trusted_proxies] == [
        "127.0.0.1/32",
        "10.0.0.0/8",
        "::1/128",
        "fd00::/8",
    ]
    assert load_settings().trusted_proxies == []


@pytest.mark.parametrize("value", ["proxy.example.org", "10.0.0.0/33", "10.0.0.1 10.0.0.2", "*"])
def test_an_invalid_trusted_proxy_is_refused_by_name(value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(trusted_proxies=f"127.0.0.1,{value}")
    (line,) = refused.value.problems
    assert line == (
        f"trusted_proxies (DRAGOMAN_TRUSTED_PROXIES): {value!r} is not an IP address or "
        "network (e.g. 10.0.0.5 or 10.0.0.0/8); separate several with commas"
    )


async def test_serve_refuses_an_invalid_trusted_proxy(tmp_path: Any) -> None:
    env = dragoman_env(DRAGOMAN_TRUSTED_PROXIES="caddy")
    result = await dragoman(
        "serve", "--port", str(free_port()), "--data-dir", tmp_path / "data", env=env
    )
    assert result.status == 1
    assert "trusted_proxies (DRAGOMAN_TRUSTED_PROXIES): 'caddy'" in result.stderr


async def register(http: aiohttp.ClientSession, url: str, n: int, forwarded_for: str | None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    body = {"name": "Jean Dupont", "email": f"p{n}@example.org", "language": "fr"}
    async with http.post(f"{url}/api/registrations", json=body, headers=headers) as response:
        return response.status


async def test_behind_a_trusted_proxy_each_visitor_has_his_own_limit(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    # The test client on 127.0.0.1 plays the reverse proxy.
    server = await start_server(
        trusted_proxies="127.0.0.1", registration_limits=RegistrationLimits(per_client=2)
    )
    assert await register(http, server.url, 1, "203.0.113.1") == 201
    assert await register(http, server.url, 2, "203.0.113.1") == 201
    assert await register(http, server.url, 3, "203.0.113.1") == 429
    # Another visitor through the same proxy is not held back by the first.
    assert await register(http, server.url, 4, "203.0.113.2") == 201
    # A forged entry left of the proxy's own does not make the first visitor new.
    assert await register(http, server.url, 5, "198.51.100.1, 203.0.113.1") == 429


async def test_a_forged_header_from_an_untrusted_peer_does_not_dodge_the_limit(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server(
        trusted_proxies="10.0.0.0/8", registration_limits=RegistrationLimits(per_client=2)
    )
    assert await register(http, server.url, 1, "203.0.113.1") == 201
    assert await register(http, server.url, 2, "203.0.113.2") == 201
    assert await register(http, server.url, 3, "203.0.113.3") == 429


async def test_lookups_count_the_forwarded_client(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server(
        trusted_proxies="127.0.0.1", registration_limits=RegistrationLimits(per_client=1)
    )
    url = f"{server.url}/api/registrations/lookup"
    for forwarded_for, status in (("203.0.113.1", 404), ("203.0.113.1", 429), ("203.0.113.2", 404)):
        async with http.post(
            url, json={"email": "who@example.org"}, headers={"X-Forwarded-For": forwarded_for}
        ) as response:
            assert response.status == status, forwarded_for


async def access_log_remotes(
    start_server: StartServer, caplog: pytest.LogCaptureFixture, **settings: Any
) -> list[str]:
    server = await start_server(**settings)
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{server.url}/healthz", headers={"X-Forwarded-For": "203.0.113.9"}
            ) as response:
                assert response.status == 200
        # The access log line is written after the response is sent.
        for _ in range(50):
            if any(r.name == "aiohttp.access" for r in caplog.records):
                break
            await asyncio.sleep(0.02)
    return [r.remote for r in caplog.records if r.name == "aiohttp.access"]  # type: ignore[attr-defined]


async def test_the_access_log_shows_the_forwarded_client_of_a_trusted_proxy(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert await access_log_remotes(start_server, caplog, trusted_proxies="127.0.0.0/8") == [
        "203.0.113.9"
    ]


async def test_the_access_log_shows_the_peer_when_it_is_not_trusted(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert await access_log_remotes(start_server, caplog) == ["127.0.0.1"]
