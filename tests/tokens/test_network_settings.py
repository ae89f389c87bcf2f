"""The settings that put a node on the Internet: media ports and addresses, TURN, ICE
servers. Every refusal names the variable and says what would be accepted."""

from __future__ import annotations

import pytest

from signaling.settings import Settings, SettingsError, load_settings
from tests.support.server import dragoman, free_port

TURN_SECRET = "t" * 40


def problem_with(**environment: str) -> str:
    """The one problem `load_settings` reports for these DRAGOMAN_* variables."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(f"DRAGOMAN_{name.upper()}", value)
        with pytest.raises(SettingsError) as caught:
            load_settings()
    (problem,) = caught.value.problems
    return problem


def test_defaults_leave_ports_and_addresses_to_the_system_and_use_no_turn() -> None:
    settings = Settings()
    assert settings.rtc_ports is None
    assert settings.rtc_addresses == []
    assert settings.turn_urls == []
    assert settings.turn_secret is None
    assert settings.turn_ttl_s == 86400


def test_network_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRAGOMAN_RTC_PORTS", "40000-40999")
    monkeypatch.setenv("DRAGOMAN_RTC_ADDRESSES", "192.0.2.10, 2001:db8::10")
    monkeypatch.setenv(
        "DRAGOMAN_TURN_URLS", "turn:turn.example.org, turns:turn.example.org:443?transport=tcp"
    )
    monkeypatch.setenv("DRAGOMAN_TURN_SECRET", TURN_SECRET)
    monkeypatch.setenv("DRAGOMAN_TURN_TTL_S", "3600")
    settings = Settings()
    assert settings.rtc_ports == (40000, 40999)
    assert settings.rtc_addresses == ["192.0.2.10", "2001:db8::10"]
    assert settings.turn_urls == [
        "turn:turn.example.org",
        "turns:turn.example.org:443?transport=tcp",
    ]
    assert settings.turn_secret is not None
    assert settings.turn_secret.get_secret_value() == TURN_SECRET
    assert settings.turn_ttl_s == 3600
    assert TURN_SECRET not in repr(settings)


def test_the_flag_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRAGOMAN_RTC_PORTS", "40000-40999")
    assert load_settings(rtc_ports="50000-50010").rtc_ports == (50000, 50010)
    assert load_settings(rtc_ports="50000-50000").rtc_ports == (50000, 50000)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("40000", "should be two port numbers joined by a dash, like 40000-40999, not '40000'"),
        ("40000:40999", "joined by a dash"),
        ("low-high", "joined by a dash"),
        ("-40000", "joined by a dash"),
        ("40999-40000", "the first port (40999) is above the last (40000)"),
        ("80-90", "ports must be from 1024 to 65535 (lower ones need root), not 80-90"),
        ("60000-70000", "ports must be from 1024 to 65535"),
    ],
)
def test_a_port_range_that_cannot_be_used_is_refused(value: str, says: str) -> None:
    problem = problem_with(rtc_ports=value)
    assert problem.startswith("rtc_ports (DRAGOMAN_RTC_PORTS): "), problem
    assert says in problem


async def test_serve_refuses_a_reversed_port_range_before_starting(tmp_path) -> None:
    result = await dragoman(
        "serve", "--port", str(free_port()), "--data-dir", tmp_path / "data",
        "--rtc-ports", "41000-40000",
    )  # fmt: skip
    assert result.status == 1
    assert "rtc_ports (DRAGOMAN_RTC_PORTS): the first port (41000) is above" in result.stderr
    assert "Open http" not in result.stdout


@pytest.mark.parametrize("value", ["eth0", "192.0.2.10, localhost", "192.0.2.300"])
def test_an_address_that_is_not_an_ip_address_is_refused(value: str) -> None:
    problem = problem_with(rtc_addresses=value)
    assert problem.startswith("rtc_addresses (DRAGOMAN_RTC_ADDRESSES): "), problem
    assert "is not an IP address; give the addresses of the node's interfaces" in problem


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("https://turn.example.org", "is not a TURN URL; write turn:HOST[:PORT]"),
        ("stun:turn.example.org", "is not a TURN URL"),
        ("turn:", "is not a TURN URL"),
        ("turn:turn.example.org:99999", "the port must be from 1 to 65535"),
        ("turn:turn.example.org?transport=sctp", "the transport must be udp or tcp, not 'sctp'"),
        ("turns:turn.example.org?transport=udp", "turns: is TURN over TLS, which runs on TCP"),
        ("turn:turn.example.org, turn:bad host", "'turn:bad host' is not a TURN URL"),
    ],
)
def test_a_turn_url_that_cannot_be_used_is_refused(value: str, says: str) -> None:
    problem = problem_with(turn_urls=value, turn_secret=TURN_SECRET)
    assert problem.startswith("turn_urls (DRAGOMAN_TURN_URLS): "), problem
    assert says in problem


def test_turn_urls_without_the_secret_are_refused() -> None:
    problem = problem_with(turn_urls="turn:turn.example.org")
    assert "DRAGOMAN_TURN_URLS is set but DRAGOMAN_TURN_SECRET is not" in problem


def test_a_turn_secret_without_urls_is_refused_without_showing_it() -> None:
    problem = problem_with(turn_secret=TURN_SECRET)
    assert "DRAGOMAN_TURN_SECRET is set but DRAGOMAN_TURN_URLS is not" in problem
    assert TURN_SECRET not in problem


def test_a_short_turn_secret_is_refused_without_showing_it() -> None:
    problem = problem_with(turn_urls="turn:turn.example.org", turn_secret="short-secret")
    assert problem == (
        "turn_secret (DRAGOMAN_TURN_SECRET): the TURN secret must be at least 32 characters long"
    )
    assert "short-secret" not in problem


def test_credentials_valid_under_a_minute_are_refused() -> None:
    problem = problem_with(turn_ttl_s="30")
    assert problem.startswith("turn_ttl_s (DRAGOMAN_TURN_TTL_S): ")
    assert "60" in problem


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("https://stun.example.org", "entry 1: 'https://stun.example.org' should start with stun:"),
        ('[{"urls": "turn:turn.example.org"}]', "entry 1: a TURN server needs a username and a"),
        ("stun:a.example.org, turn:turn.example.org", "entry 2: a TURN server needs a username"),
        ('[{"url": "stun:a.example.org"}]', "entry 1 has unknown keys ['url']"),
        ('[{"urls": []}]', "entry 1 needs urls: one URL or a list of URLs"),
        ("[42]", "entry 1 should be a URL or an object with urls, not 42"),
        ('[{"urls": "turn:t.example.org", "username": "u", "credential": 7}]', "should be text"),
    ],
)
def test_an_ice_server_that_cannot_be_used_is_refused(value: str, says: str) -> None:
    problem = problem_with(ice_servers=value)
    assert problem.startswith("ice_servers (DRAGOMAN_ICE_SERVERS): "), problem
    assert says in problem
