"""The `dragoman` command run as a separate process, as an organizer runs it."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from signaling.secret import load_or_create_secret
from signaling.settings import load_settings
from signaling.tokens import Role, TokenSigner
from tests.support.server import (
    REPO_ROOT,
    CommandResult,
    RunningServer,
    dragoman,
    dragoman_env,
    free_port,
)

SEED = REPO_ROOT / "config" / "events" / "shared-historical-memory.yaml"


def broken_program(tmp_path: Path) -> Path:
    data: dict[str, Any] = yaml.safe_load(SEED.read_text("utf-8"))
    data["timezone"] = "Europe/Bruxelles"
    data["sessions"][1]["speakers"][2]["language"] = "de"
    data["sessions"][2]["speakers"][0]["id"] = data["sessions"][0]["speakers"][0]["id"]
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    return path


async def test_check_config_accepts_the_seed() -> None:
    result = await dragoman("check-config", SEED)
    assert result.status == 0, result.stderr
    assert result.stdout.strip() == (
        "OK: Shared Historical Memory: Resistance Movement, 3 sessions, 13 speakers"
    )


async def test_check_config_lists_every_problem_and_fails(tmp_path: Path) -> None:
    result = await dragoman("check-config", broken_program(tmp_path))
    assert result.status == 1
    assert "timezone: 'Europe/Bruxelles' is not an IANA time zone" in result.stderr
    assert (
        "sessions[1].speakers[2].language: 'de' is not one of the event's languages"
        in result.stderr
    )
    assert "sessions[2].speakers[0].id: 'alexander-tokovinin' is already used" in result.stderr
    assert result.stdout == ""


async def test_check_config_on_a_missing_file_says_so(tmp_path: Path) -> None:
    result = await dragoman("check-config", tmp_path / "nope.yaml")
    assert result.status == 1
    assert "does not exist" in result.stderr


async def test_serve_refuses_an_invalid_program(tmp_path: Path) -> None:
    port = free_port()
    result = await dragoman(
        "serve", "--port", str(port), "--data-dir", tmp_path / "data", "--event",
        broken_program(tmp_path),
    )  # fmt: skip
    assert result.status == 1
    assert "'de' is not one of the event's languages" in result.stderr
    assert "is not an IANA time zone" in result.stderr
    assert "Open http" not in result.stdout


async def test_serve_on_a_busy_port_says_which(tmp_path: Path, server: RunningServer) -> None:
    port = server.settings.port
    result = await dragoman("serve", "--port", str(port), "--data-dir", tmp_path / "data")
    assert result.status == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def token_of(url: str) -> str:
    return url.split("?token=", 1)[1]


async def invite(server: RunningServer, *args: str) -> CommandResult:
    return await dragoman(
        "invite", *args, "--data-dir", server.settings.data_dir,
        "--public-url", server.url,
    )  # fmt: skip


async def test_invite_moderator_link_is_accepted_by_the_server(server: RunningServer) -> None:
    result = await invite(server, "--role", "moderator", "--name", "Marie")
    assert result.status == 0, result.stderr
    url = result.stdout.strip()
    assert url.startswith(f"{server.url}/studio?token=")
    claims = server.signer.verify(token_of(url))
    assert claims.role is Role.MODERATOR
    assert claims.subject == "Marie"
    assert "the moderator link" in result.stderr


async def test_invite_interpreter_link_is_scoped_to_its_booth(server: RunningServer) -> None:
    # Two interpreters of one booth, invited at once.
    result, second = await asyncio.gather(
        invite(server, "--role", "interpreter", "--booth", "ru-fr"),
        invite(server, "--role", "interpreter", "--booth", "ru-fr"),
    )
    assert result.status == 0, result.stderr
    url = result.stdout.strip()
    assert url.startswith(f"{server.url}/booth?token=")
    claims = server.signer.verify(token_of(url))
    assert (claims.role, claims.booth) == (Role.INTERPRETER, "ru-fr")
    # Two interpreters of one booth get two identities.
    other = server.signer.verify(token_of(second.stdout))
    assert other.subject != claims.subject


async def test_invite_speaker_link_is_scoped_to_the_speaker(server: RunningServer) -> None:
    result = await invite(server, "--role", "speaker", "--speaker", "elena-naumova")
    assert result.status == 0, result.stderr
    url = result.stdout.strip()
    assert url.startswith(f"{server.url}/stage?token=")
    claims = server.signer.verify(token_of(url))
    assert (claims.role, claims.speaker) == (Role.SPEAKER, "elena-naumova")


async def test_invite_validity_follows_ttl_hours(server: RunningServer) -> None:
    result = await invite(server, "--role", "moderator", "--ttl-hours", "2")
    claims = server.signer.verify(token_of(result.stdout.strip()))
    expected = datetime.now(UTC) + timedelta(hours=2)
    assert abs((claims.expires_at - expected).total_seconds()) < 120


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "interpreter", "--booth", "de-fr"], "there is no booth 'de-fr'"),
        (["--role", "interpreter"], "needs --booth; the booths are: ru-fr"),
        (["--role", "speaker", "--speaker", "nobody"], "there is no speaker 'nobody'"),
        (["--role", "speaker"], "needs --speaker; the speakers are: alexander-tokovinin"),
        (["--role", "moderator", "--booth", "ru-fr"], "--booth is only for --role interpreter"),
        (["--role", "moderator", "--ttl-hours", "0"], "--ttl-hours must be a positive"),
    ],
)
async def test_invite_refusals_say_what_is_valid(
    server: RunningServer, args: list[str], message: str
) -> None:
    result = await invite(server, *args)
    assert result.status == 1
    assert message in result.stderr
    assert result.stdout == ""
    if "booth '" in message:
        assert "the booths are: ru-fr" in result.stderr
    if "speaker '" in message:
        assert "elena-naumova" in result.stderr


async def test_invite_rejects_an_unknown_role(server: RunningServer) -> None:
    result = await invite(server, "--role", "attendee")
    assert result.status == 2
    assert "invalid choice: 'attendee'" in result.stderr


async def test_invite_without_a_running_server_uses_the_same_secret(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = await dragoman("invite", "--role", "moderator", "--data-dir", data_dir)
    assert result.status == 0, result.stderr
    assert result.stdout.startswith("http://127.0.0.1:8080/studio?token=")
    # The secret was created in the data directory; the server will read the same one.
    secret = load_or_create_secret(load_settings(data_dir=data_dir))
    assert TokenSigner(secret).verify(token_of(result.stdout.strip())).role is Role.MODERATOR
    assert (data_dir / "secret.key").stat().st_mode & 0o777 == 0o600


async def test_public_url_comes_from_the_environment(tmp_path: Path) -> None:
    env = dragoman_env(DRAGOMAN_PUBLIC_URL="https://events.example.org/")
    result = await dragoman("invite", "--role", "moderator", "--data-dir", tmp_path, env=env)
    assert result.stdout.startswith("https://events.example.org/studio?token=")


async def register(server: RunningServer, name: str, email: str, language: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.url}/api/registrations",
            json={"name": name, "email": email, "language": language},
        ) as response,
    ):
        assert response.status == 201


async def test_registrations_list_and_csv_export(server: RunningServer, tmp_path: Path) -> None:
    await register(server, "Алла Жуплатова", "alla@example.org", "ru")
    await register(server, '=HYPERLINK("http://evil.example")', "eve@example.org", "fr")
    data_dir = server.settings.data_dir
    out = tmp_path / "export.csv"
    with_links = ("--csv", out, "--links", "--public-url", server.url)

    # Three commands that only read the registrations: run together.
    listed, exported, to_file = await asyncio.gather(
        dragoman("registrations", "--data-dir", data_dir),
        dragoman("registrations", "--data-dir", data_dir, "--csv", "-"),
        dragoman("registrations", "--data-dir", data_dir, *with_links),
    )
    assert listed.status == 0, listed.stderr
    assert "2 registrations for Shared Historical Memory" in listed.stdout
    assert "Алла Жуплатова <alla@example.org>" in listed.stdout

    assert exported.status == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [row["email"] for row in rows] == ["alla@example.org", "eve@example.org"]
    assert rows[0]["name"] == "Алла Жуплатова"
    assert rows[0]["language"] == "ru"
    # A name that a spreadsheet would run as a formula is exported as text.
    assert rows[1]["name"] == '\'=HYPERLINK("http://evil.example")'

    assert to_file.status == 0, to_file.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    assert len(rows) == 2
    claims = server.signer.verify(token_of(rows[0]["link"]))
    assert claims.role is Role.ATTENDEE and claims.registration == rows[0]["id"]


async def test_registrations_of_an_empty_data_dir(tmp_path: Path) -> None:
    result = await dragoman("registrations", "--data-dir", tmp_path / "fresh")
    assert result.status == 0, result.stderr
    assert result.stdout.startswith("0 registrations")


async def test_settings_problems_are_reported_by_name(tmp_path: Path) -> None:
    env = dragoman_env(DRAGOMAN_SECRET="short")
    result = await dragoman("invite", "--role", "moderator", "--data-dir", tmp_path, env=env)
    assert result.status == 1
    assert "DRAGOMAN_SECRET" in result.stderr
    assert "short" not in result.stderr.replace("shorter", "")


async def test_serve_without_its_redis_says_so(tmp_path: Path) -> None:
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    result = await dragoman(
        "serve", "--port", str(free_port()), "--data-dir", tmp_path, "--redis-url", unreachable
    )
    assert result.status == 1
    assert "cannot open the store" in result.stderr
    assert "Open http" not in result.stdout


async def test_serve_refuses_invalid_settings_naming_the_variable(tmp_path: Path) -> None:
    result = await dragoman("serve", "--port", "70000", "--data-dir", tmp_path)
    assert result.status == 1
    assert "port (DRAGOMAN_PORT)" in result.stderr
