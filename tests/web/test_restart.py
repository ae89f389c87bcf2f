"""`dragoman serve` as a process: what it prints, that a restart loses nothing, and two
nodes sharing one Redis."""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path
from typing import Any

import aiohttp

from signaling.secret import load_or_create_secret
from signaling.settings import load_settings
from signaling.tokens import TokenSigner
from tests.support.server import StartServeProcess, dragoman, dragoman_env

PERSON = {"name": "Алла Жуплатова", "email": "alla@example.org", "language": "ru"}


async def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as response:
        return response.status, await response.json()


async def test_a_restart_keeps_registrations_and_links(
    serve_process: StartServeProcess, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    node = await serve_process(data_dir)
    status, first = await post(f"{node.url}/api/registrations", PERSON)
    assert status == 201
    assert await node.stop() == 0

    again = await serve_process(data_dir, port=node.port)
    status, second = await post(f"{again.url}/api/registrations", PERSON)
    assert status == 200
    assert second["registration"] == first["registration"]
    status, found = await post(f"{again.url}/api/registrations/lookup", {"email": PERSON["email"]})
    assert status == 200
    assert found["registration"]["id"] == first["registration"]["id"]
    # The secret stayed in the data directory: the link given before the restart is valid.
    signer = TokenSigner(load_or_create_secret(load_settings(data_dir=data_dir)))
    claims = signer.verify(first["link"].split("token=", 1)[1])
    assert claims.registration == first["registration"]["id"]


async def test_two_nodes_on_one_redis_share_registrations(
    serve_process: StartServeProcess, tmp_path: Path, redis_url: str
) -> None:
    env = dragoman_env(DRAGOMAN_SECRET="x" * 40)
    a, b = await asyncio.gather(
        *(serve_process(tmp_path / n, "--redis-url", redis_url, env=env) for n in "ab")
    )
    status, on_a = await post(f"{a.url}/api/registrations", PERSON)
    assert status == 201
    status, on_b = await post(f"{b.url}/api/registrations", {**PERSON, "email": "ALLA@example.org"})
    assert status == 200
    assert on_b["registration"]["id"] == on_a["registration"]["id"]
    async with aiohttp.ClientSession() as http, http.get(f"{b.url}/healthz") as response:
        assert response.status == 200


async def test_serve_prints_where_to_go_and_an_invite_command_that_works_pasted_as_is(
    serve_process: StartServeProcess, tmp_path: Path
) -> None:
    data_dir = tmp_path / "event data"  # a space, as in many organizers' folders
    node = await serve_process(data_dir)
    printed = "".join(node.stdout_lines)
    assert f"Open {node.url}/ in a browser." in printed
    assert "dragoman invite --role moderator" in printed
    assert f"--data-dir {shlex.quote(str(data_dir))}" in printed
    assert f"--public-url {node.url}" in printed
    assert "dragoman invite --role interpreter --booth ru-fr" in printed
    assert await node.stop() == 0
    line = next(row for row in printed.splitlines() if "invite --role moderator" in row)
    argv = shlex.split(line.strip())
    assert argv[:2] == ["dragoman", "invite"]
    done = await dragoman(*argv[1:])
    assert done.status == 0, done.stderr
    link = next(word for word in done.stdout.split() if "/studio?token=" in word)
    assert link.startswith(f"{node.url}/studio?token=")
    signer = TokenSigner(load_or_create_secret(load_settings(data_dir=data_dir)))
    assert signer.verify(link.split("token=", 1)[1]).role.value == "moderator"
