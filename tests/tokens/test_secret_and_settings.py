"""The instance secret (0600 file in the data directory, made once, reused) and the
settings it comes from (DRAGOMAN_* environment variables)."""

import os
import stat
from pathlib import Path

import pytest

from signaling.secret import SecretError, load_or_create_secret, secret_path
from signaling.settings import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DRAGOMAN_"):
            monkeypatch.delenv(name)


def test_secret_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = load_or_create_secret(settings)
    path = secret_path(settings)
    assert path == tmp_path / "data" / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 32
    # Another process (the CLI) with the same data directory signs alike.
    assert load_or_create_secret(Settings(data_dir=tmp_path / "data")) == first
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]


def test_secret_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        load_or_create_secret(Settings(data_dir=tmp_path))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "secret.key").stat().st_mode) == 0o600


def test_secret_from_settings_wins_and_writes_nothing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, secret="s" * 40)
    assert load_or_create_secret(settings) == b"s" * 40
    assert not (tmp_path / "secret.key").exists()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_secret_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "secret.key"
    path.write_bytes(b"x" * 32)
    path.chmod(mode)
    with pytest.raises(
        SecretError, match=f"can be read or written by other users .mode {mode:04o}"
    ):
        load_or_create_secret(Settings(data_dir=tmp_path))


def test_empty_secret_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_bytes(b"")
    path.chmod(0o600)
    with pytest.raises(SecretError, match="is empty; delete it to generate a new one"):
        load_or_create_secret(Settings(data_dir=tmp_path))
    assert path.read_bytes() == b""


def test_short_secret_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_bytes(b"abc")
    path.chmod(0o600)
    with pytest.raises(SecretError, match="holds only 3 bytes"):
        load_or_create_secret(Settings(data_dir=tmp_path))


def test_secret_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.key").mkdir(mode=0o700)
    with pytest.raises(SecretError, match="is not a regular file"):
        load_or_create_secret(Settings(data_dir=tmp_path))


def test_defaults() -> None:
    settings = Settings()
    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.public_url == "http://127.0.0.1:8080"
    assert settings.data_dir == Path("data")
    assert settings.event_file.name == "shared-historical-memory.yaml"
    assert settings.event_file.is_file()
    assert settings.redis_url is None
    assert settings.ice_servers == []
    assert settings.ice_public_address is None
    assert settings.secret is None
    assert settings.token_ttl_hours > 0
    assert settings.log_format == "auto"


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DRAGOMAN_HOST", "0.0.0.0")
    monkeypatch.setenv("DRAGOMAN_PORT", "9000")
    monkeypatch.setenv("DRAGOMAN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DRAGOMAN_EVENT_FILE", str(tmp_path / "event.yaml"))
    monkeypatch.setenv("DRAGOMAN_REDIS_URL", "redis://127.0.0.1:6390/0")
    monkeypatch.setenv("DRAGOMAN_ICE_SERVERS", "stun:stun.example.org:3478, stun:stun.example.net")
    monkeypatch.setenv("DRAGOMAN_ICE_PUBLIC_ADDRESS", "203.0.113.7")
    monkeypatch.setenv("DRAGOMAN_SECRET", "z" * 32)
    monkeypatch.setenv("DRAGOMAN_TOKEN_TTL_HOURS", "12")
    monkeypatch.setenv("DRAGOMAN_LOG_FORMAT", "json")
    settings = Settings()
    assert settings.host == "0.0.0.0"
    assert settings.port == 9000
    # Listening on every interface: links point at localhost unless a public URL is set.
    assert settings.public_url == "http://localhost:9000"
    assert settings.data_dir == tmp_path
    assert settings.event_file == tmp_path / "event.yaml"
    assert settings.redis_url == "redis://127.0.0.1:6390/0"
    assert [server.urls for server in settings.ice_servers] == [
        ("stun:stun.example.org:3478",),
        ("stun:stun.example.net",),
    ]
    assert settings.ice_public_address == "203.0.113.7"
    assert settings.secret is not None and settings.secret.get_secret_value() == "z" * 32
    assert settings.token_ttl_hours == 12
    assert settings.log_format == "json"
    assert "zzzz" not in repr(settings)


def test_ice_servers_as_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "DRAGOMAN_ICE_SERVERS",
        '["stun:a.example.org", {"urls": ["turn:b.example.org", "turns:b.example.org"], '
        '"username": "event", "credential": "s3cret"}]',
    )
    stun, turn = Settings().ice_servers
    assert stun.urls == ("stun:a.example.org",) and stun.username is None
    assert turn.urls == ("turn:b.example.org", "turns:b.example.org")
    assert (turn.username, turn.credential) == ("event", "s3cret")
    assert "s3cret" not in repr(Settings())


def test_ice_servers_that_are_broken_json_are_refused_saying_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRAGOMAN_ICE_SERVERS", '["stun:a.example.org"')
    with pytest.raises(SettingsError) as caught:
        load_settings()
    (problem,) = caught.value.problems
    assert problem.startswith(
        "ice_servers (DRAGOMAN_ICE_SERVERS): starts with '[' but is not a JSON list of URLs"
    )


def test_public_url_is_kept_without_trailing_slash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRAGOMAN_PUBLIC_URL", "https://events.example.org/")
    assert Settings().public_url == "https://events.example.org"


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRAGOMAN_PORT", "9000")
    settings = load_settings(port=9100, host=None)
    assert settings.port == 9100
    assert settings.host == "127.0.0.1"
    assert settings.public_url == "http://127.0.0.1:9100"


def test_ipv6_host_is_bracketed_in_the_public_url() -> None:
    assert Settings(host="::1", port=8081).public_url == "http://[::1]:8081"


def test_invalid_settings_name_the_variable_and_hide_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRAGOMAN_PORT", "eighty")
    monkeypatch.setenv("DRAGOMAN_SECRET", "hunter2")
    monkeypatch.setenv("DRAGOMAN_LOG_FORMAT", "xml")
    monkeypatch.setenv("DRAGOMAN_PUBLIC_URL", "events.example.org")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    problems = caught.value.problems
    assert "secret (DRAGOMAN_SECRET): the secret must be at least 32 characters long" in problems
    assert any(p.startswith("port (DRAGOMAN_PORT): should be a valid integer") for p in problems)
    assert any(p.startswith("log_format (DRAGOMAN_LOG_FORMAT): ") for p in problems)
    assert (
        "public_url (DRAGOMAN_PUBLIC_URL): the public URL must start with http:// or https://"
        in problems
    )
    assert "hunter2" not in str(caught.value)


def test_the_log_repeat_interval_is_read_and_must_be_positive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().log_repeat_interval_s == 10.0
    monkeypatch.setenv("DRAGOMAN_LOG_REPEAT_INTERVAL_S", "2.5")
    assert Settings().log_repeat_interval_s == 2.5
    monkeypatch.setenv("DRAGOMAN_LOG_REPEAT_INTERVAL_S", "0")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert any(
        p.startswith("log_repeat_interval_s (DRAGOMAN_LOG_REPEAT_INTERVAL_S): ")
        for p in caught.value.problems
    ), caught.value.problems


def test_default_event_file_does_not_depend_on_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    event_file = Settings().event_file
    assert event_file.is_absolute()
    assert event_file.is_file()


def test_video_codec_is_vp8_or_h264(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().video_codec == "h264"
    monkeypatch.setenv("DRAGOMAN_VIDEO_CODEC", "vp8")
    assert load_settings().video_codec == "vp8"
    monkeypatch.setenv("DRAGOMAN_VIDEO_CODEC", "av1")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "DRAGOMAN_VIDEO_CODEC" in str(caught.value)
    assert "vp8" in str(caught.value) and "h264" in str(caught.value)


REDIS = "redis://127.0.0.1:6390/0"


@pytest.mark.parametrize(
    ("given", "parsed"),
    [
        ("203.0.113.7", ("203.0.113.7", None)),
        (" 203.0.113.7:40000 ", ("203.0.113.7", 40000)),
        ("2001:db8::7", ("2001:db8::7", None)),
        ("[2001:db8::7]", ("2001:db8::7", None)),
        ("[2001:db8::7]:40000", ("2001:db8::7", 40000)),
        ("127.0.0.1:65535", ("127.0.0.1", 65535)),
        ("", None),  # a compose file's ${VARIABLE:-}: unset
    ],
)
def test_the_link_public_address_is_an_ip_with_or_without_a_port(
    monkeypatch: pytest.MonkeyPatch, given: str, parsed: tuple[str, int | None] | None
) -> None:
    monkeypatch.setenv("DRAGOMAN_REDIS_URL", REDIS)
    monkeypatch.setenv("DRAGOMAN_LINK_PUBLIC_ADDRESS", given)
    assert load_settings().link_public_address == parsed


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("nodes.example.org", "is not an IP address"),
        ("nodes.example.org:40000", "is not an IP address"),
        ("203.0.113.7:40000:1", "is not an IP address"),
        ("0.0.0.0", "wildcard"),
        ("[::]:40000", "wildcard"),
        ("224.0.0.7", "multicast"),
        ("203.0.113.7:0", "from 1 to 65535"),
        ("203.0.113.7:65536", "from 1 to 65535"),
        ("203.0.113.7:port", "from 1 to 65535"),
        ("203.0.113.7:", "from 1 to 65535"),
        ("[2001:db8::7]40000", "is not an address"),
        ("[2001:db8::7", "is not an address"),
    ],
)
def test_a_bad_link_public_address_is_refused_naming_the_setting_and_the_value(
    monkeypatch: pytest.MonkeyPatch, given: str, says: str
) -> None:
    monkeypatch.setenv("DRAGOMAN_REDIS_URL", REDIS)
    monkeypatch.setenv("DRAGOMAN_LINK_PUBLIC_ADDRESS", given)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    (problem,) = caught.value.problems
    assert problem.startswith("link_public_address (DRAGOMAN_LINK_PUBLIC_ADDRESS): "), problem
    assert repr(given) in problem and says in problem, problem


def test_a_link_public_address_needs_redis_and_one_port_per_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRAGOMAN_LINK_PUBLIC_ADDRESS", "203.0.113.7:40000")
    with pytest.raises(SettingsError, match="DRAGOMAN_REDIS_URL is not"):
        load_settings()
    monkeypatch.setenv("DRAGOMAN_LINK_PORT", "40000")
    with pytest.raises(SettingsError, match="_PORT and DRAGOMAN_LINK_PUBLIC_ADDRESS are set"):
        load_settings()
    monkeypatch.delenv("DRAGOMAN_LINK_PORT")
    monkeypatch.setenv("DRAGOMAN_REDIS_URL", REDIS)
    # Each worker is a node with a link port of its own: one port cannot be theirs.
    with pytest.raises(SettingsError, match=r"names one port \(40000\).* \(203\.0\.113\.7\)"):
        load_settings(workers=2)
    monkeypatch.setenv("DRAGOMAN_LINK_PUBLIC_ADDRESS", "203.0.113.7")
    assert load_settings(workers=2).link_public_address == ("203.0.113.7", None)


def test_a_node_behind_a_nat_binds_its_link_where_the_nat_forwards_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from signaling.websocket import _link_host

    monkeypatch.setenv("DRAGOMAN_REDIS_URL", REDIS)
    monkeypatch.setenv("DRAGOMAN_LINK_PUBLIC_ADDRESS", "203.0.113.7")
    # Nothing says which interface: every one (the NAT forwards to one of them).
    assert _link_host(load_settings()) == "0.0.0.0"
    monkeypatch.setenv("DRAGOMAN_RTC_ADDRESSES", "10.0.0.7")
    assert _link_host(load_settings()) == "10.0.0.7"
    monkeypatch.setenv("DRAGOMAN_LINK_HOST", "10.0.0.8")
    assert _link_host(load_settings()) == "10.0.0.8"
    monkeypatch.delenv("DRAGOMAN_RTC_ADDRESSES")
    monkeypatch.delenv("DRAGOMAN_LINK_HOST")
    monkeypatch.setenv("DRAGOMAN_LINK_PUBLIC_ADDRESS", "[2001:db8::7]:40000")
    assert _link_host(load_settings()) == "::"


def test_a_link_port_is_one_port_of_one_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRAGOMAN_LINK_PORT", "40000")
    with pytest.raises(SettingsError, match="DRAGOMAN_LINK_PORT is set but DRAGOMAN_REDIS_URL"):
        load_settings()
    monkeypatch.setenv("DRAGOMAN_REDIS_URL", REDIS)
    assert load_settings().link_port == 40000
    with pytest.raises(SettingsError, match=r"DRAGOMAN_LINK_PORT is set \(40000\) but"):
        load_settings(workers=3)
    for bad in ("80", "65536", "forty"):
        monkeypatch.setenv("DRAGOMAN_LINK_PORT", bad)
        with pytest.raises(SettingsError) as caught:
            load_settings()
        (problem,) = caught.value.problems
        assert problem.startswith("link_port (DRAGOMAN_LINK_PORT): "), problem
