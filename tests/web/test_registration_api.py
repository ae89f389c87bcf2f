"""Registration over HTTP against a real server: success, idempotence, lookup, refusals."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from signaling.http_api import MAX_BODY_BYTES
from signaling.registration import RegistrationLimits
from signaling.secret import load_or_create_secret
from signaling.tokens import Role, TokenSigner
from tests.support.server import RunningServer, StartServer

CYRILLIC_NAME = "Алла Жуплатова"
HOSTILE_NAME = "<script>alert(1)</script>"


async def post(
    http: aiohttp.ClientSession, url: str, body: Any, **kwargs: Any
) -> tuple[int, dict[str, Any], aiohttp.typedefs.LooseHeaders]:
    async with http.post(url, json=body, **kwargs) as response:
        return response.status, await response.json(), response.headers


def person(**overrides: Any) -> dict[str, Any]:
    body = {"name": "Jean Dupont", "email": "jean.dupont@example.org", "language": "fr"}
    body.update(overrides)
    return body


async def test_registration_returns_a_personal_link_admitting_an_attendee(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    status, body, _ = await post(
        http, f"{server.url}/api/registrations", person(name=CYRILLIC_NAME, language="ru")
    )
    assert status == 201
    assert body["created"] is True
    registration = body["registration"]
    assert registration["name"] == CYRILLIC_NAME
    assert registration["email"] == "jean.dupont@example.org"
    assert registration["language"] == "ru"
    assert body["link"].startswith(f"{server.url}/watch?token=")

    # The link's token is verified with the secret kept in the data directory.
    token = body["link"].split("token=", 1)[1]
    claims = TokenSigner(load_or_create_secret(server.settings)).verify(token)
    assert claims.role is Role.ATTENDEE
    assert claims.registration == registration["id"]

    stored = await server.store.registration(registration["id"])
    assert stored is not None and stored.name == CYRILLIC_NAME


async def test_registering_again_with_the_same_email_in_another_case_returns_the_same(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    url = f"{server.url}/api/registrations"
    first_status, first, _ = await post(http, url, person())
    again_status, again, _ = await post(
        http, url, person(name="Someone Else", email="  JEAN.Dupont@EXAMPLE.org ")
    )
    assert (first_status, again_status) == (201, 200)
    assert again["created"] is False
    assert again["registration"] == first["registration"]
    assert len(await server.store.registrations(server.event.id)) == 1


async def test_hostile_name_is_stored_and_returned_as_given(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    status, body, _ = await post(http, f"{server.url}/api/registrations", person(name=HOSTILE_NAME))
    assert status == 201
    assert body["registration"]["name"] == HOSTILE_NAME


async def test_lookup_gives_back_the_link_of_a_registered_address(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    _, registered, _ = await post(http, f"{server.url}/api/registrations", person())
    status, found, _ = await post(
        http, f"{server.url}/api/registrations/lookup", {"email": "Jean.Dupont@example.ORG"}
    )
    assert status == 200
    assert found["registration"]["id"] == registered["registration"]["id"]
    assert found["created"] is False
    claims = server.signer.verify(found["link"].split("token=", 1)[1])
    assert claims.registration == registered["registration"]["id"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"email": "nobody@example.org"}, 404, "not_registered"),
        ({"email": "not an address"}, 422, "invalid_email"),
        ({"email": ""}, 422, "required"),
        ({}, 422, "required"),
        ({"email": "a@example.org", "name": "x"}, 422, "unknown_field"),
    ],
)
async def test_lookup_refusals_name_the_problem(
    server: RunningServer, http: aiohttp.ClientSession, body: Any, status: int, code: str
) -> None:
    got_status, got, _ = await post(http, f"{server.url}/api/registrations/lookup", body)
    assert got_status == status
    assert got["error"]["code"] == code
    assert got["error"]["message"]


INVALID_REGISTRATIONS = [
    pytest.param(person(name=""), "name", "required", "name is required", id="empty-name"),
    pytest.param(person(name="   "), "name", "required", "name is required", id="blank-name"),
    pytest.param(
        {k: v for k, v in person().items() if k != "name"},
        "name",
        "required",
        "required",
        id="missing-name",
    ),
    pytest.param(person(name="x" * 201), "name", "too_long", "at most 200", id="long-name"),
    pytest.param(person(name="Jean\x00Dupont"), "name", "invalid", "control", id="control-name"),
    pytest.param(person(name="\u202eevil"), "name", "invalid", "control", id="bidi-name"),
    pytest.param(person(name=42), "name", "invalid", "text", id="number-name"),
    pytest.param(person(name=["a"]), "name", "invalid", "text", id="list-name"),
    pytest.param(person(email=""), "email", "required", "required", id="empty-email"),
    pytest.param(
        person(email="jean.dupont"), "email", "invalid_email", "name@example.org", id="no-at"
    ),
    pytest.param(person(email="jean@"), "email", "invalid_email", "", id="no-domain"),
    pytest.param(
        person(email="jean@localhost"), "email", "invalid_email", "domain", id="bare-host"
    ),
    pytest.param(person(email="je an@example.org"), "email", "invalid_email", "spaces", id="space"),
    pytest.param(
        person(email="a" * 250 + "@example.org"), "email", "invalid_email", "254", id="long-email"
    ),
    pytest.param(person(language="de"), "language", "unknown_language", "'de'", id="german"),
    pytest.param(person(language=""), "language", "required", "required", id="empty-language"),
    pytest.param(
        {k: v for k, v in person().items() if k != "language"},
        "language",
        "required",
        "required",
        id="missing-language",
    ),
    pytest.param(person(admin=True), "admin", "unknown_field", "not a field", id="extra-field"),
]


@pytest.mark.parametrize(("body", "field", "code", "message_part"), INVALID_REGISTRATIONS)
async def test_invalid_registration_names_the_field_and_the_problem(
    server: RunningServer,
    http: aiohttp.ClientSession,
    body: dict[str, Any],
    field: str,
    code: str,
    message_part: str,
) -> None:
    status, got, _ = await post(http, f"{server.url}/api/registrations", body)
    assert status == 422, got
    assert got["error"]["field"] == field
    assert got["error"]["code"] == code
    assert message_part in got["error"]["message"]
    assert await server.store.registrations(server.event.id) == []


async def test_oversized_body_is_refused_with_413(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    big = json.dumps(person(name="x" * (MAX_BODY_BYTES + 10)))
    async with http.post(
        f"{server.url}/api/registrations",
        data=big,
        headers={"Content-Type": "application/json"},
    ) as response:
        assert response.status == 413
        assert (await response.json())["error"]["code"] == "body_too_large"


async def test_oversized_chunked_body_without_length_is_refused_with_413(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async def chunks():  # no Content-Length: the server must count what it reads
        for _ in range(40):
            yield b" " * 1024

    async with http.post(
        f"{server.url}/api/registrations",
        data=chunks(),
        headers={"Content-Type": "application/json"},
    ) as response:
        assert response.status == 413
        assert (await response.json())["error"]["code"] == "body_too_large"


async def test_a_body_arriving_in_small_pieces_is_read_whole(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    body = json.dumps(person(name="Jean " + "x" * 150)).encode()

    async def pieces():  # chunked, no Content-Length, many small writes
        for start in range(0, len(body), 7):
            yield body[start : start + 7]
            await asyncio.sleep(0)

    async with http.post(
        f"{server.url}/api/registrations",
        data=pieces(),
        headers={"Content-Type": "application/json"},
    ) as response:
        assert response.status == 201, await response.text()


@pytest.mark.parametrize(
    ("data", "message_part"),
    [
        (b'{"name": "Jean", ', "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"just a string"', "JSON object"),
        (b"\xff\xfe{}", "UTF-8"),
    ],
)
async def test_malformed_json_is_refused_with_400(
    server: RunningServer, http: aiohttp.ClientSession, data: bytes, message_part: str
) -> None:
    async with http.post(
        f"{server.url}/api/registrations", data=data, headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 400
        error = (await response.json())["error"]
        assert error["code"] == "invalid_json"
        assert message_part in error["message"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_body_that_is_not_json_is_refused_with_415(
    server: RunningServer, http: aiohttp.ClientSession, content_type: str
) -> None:
    async with http.post(
        f"{server.url}/api/registrations",
        data=b"name=Jean&email=jean%40example.org&language=fr",
        headers={"Content-Type": content_type},
    ) as response:
        assert response.status == 415
        error = (await response.json())["error"]
        assert error["code"] == "unsupported_media_type"
        assert "application/json" in error["message"]


async def test_too_many_attempts_from_one_address_are_refused_with_429(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server(registration_limits=RegistrationLimits(per_client=3))
    url = f"{server.url}/api/registrations"
    for n in range(3):
        status, _, _ = await post(http, url, person(email=f"p{n}@example.org"))
        assert status == 201
    status, body, headers = await post(http, url, person(email="p4@example.org"))
    assert status == 429
    assert body["error"]["code"] == "rate_limited"
    assert int(headers["Retry-After"]) > 0
    # Nothing was registered by the refused attempt, and the rest of the API still answers.
    assert len(await server.store.registrations(server.event.id)) == 3
    async with http.get(f"{server.url}/api/event") as response:
        assert response.status == 200


async def test_too_many_attempts_for_one_email_are_refused_with_429_on_the_email_field(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server(registration_limits=RegistrationLimits(per_email=2))
    url = f"{server.url}/api/registrations"
    assert (await post(http, url, person()))[0] == 201
    assert (await post(http, url, person()))[0] == 200
    status, body, _ = await post(http, url, person())
    assert status == 429
    assert body["error"]["field"] == "email"


async def test_lookups_are_rate_limited_too(
    start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server(registration_limits=RegistrationLimits(per_client=2))
    url = f"{server.url}/api/registrations/lookup"
    for _ in range(2):
        assert (await post(http, url, {"email": "who@example.org"}))[0] == 404
    status, body, _ = await post(http, url, {"email": "who@example.org"})
    assert status == 429
    assert body["error"]["code"] == "rate_limited"


async def test_registration_works_on_the_redis_store(
    start_server: StartServer, http: aiohttp.ClientSession, redis_url: str
) -> None:
    server = await start_server(redis_url=redis_url)
    status, body, _ = await post(http, f"{server.url}/api/registrations", person())
    assert status == 201
    status, again, _ = await post(http, f"{server.url}/api/registrations", person())
    assert status == 200
    assert again["registration"]["id"] == body["registration"]["id"]


async def test_unknown_api_route_and_wrong_method_answer_json_errors(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{server.url}/api/nothing-here") as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"
    async with http.get(f"{server.url}/api/registrations") as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
        assert (await response.json())["error"]["code"] == "method_not_allowed"
