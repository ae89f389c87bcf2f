"""Property-based fuzzing of every HTTP route of a real node (hypothesis): whatever the
body, query string or headers, the answer is never a 5xx, the log holds no traceback,
the API answers in its JSON error shape, and the node still answers /healthz.

Each test runs a bounded number of examples against one node, so the whole file takes
well under a minute."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from signaling.registration import RegistrationLimits
from signaling.tokens import Role
from tests.support.server import RunningServer, StartServer

FUZZ = settings(
    max_examples=150,
    deadline=None,
    # One node serves every example of a test: that is the point (state must survive).
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=300),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=20,
)
registration_like = st.fixed_dictionaries(
    {},
    optional={
        "name": json_values,
        "email": json_values | st.emails().map(str),
        "language": json_values | st.sampled_from(["fr", "ru", "en", "FR", ""]),
        "timezone": json_values | st.sampled_from(["Europe/Paris", "Mars/Olympus", "../etc"]),
    },
)
# Hostile texts: deep nesting, long numbers, lone surrogate escapes, broken JSON.
hostile_texts = st.one_of(
    st.integers(1, 6000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(1, 3000).map(lambda depth: '{"name":' * depth + "1" + "}" * depth),
    st.integers(20, 6000).map(lambda digits: '{"name": ' + "7" * digits + "}"),
    st.sampled_from(['{"name": NaN}', '{"\\ud800": 1}', '{"email": "\\udfff"}', "[1e999]"]),
    st.text(max_size=500),
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "",
        "*/*; x=y",
        "application/json; charset=latin-1",
    ]
)
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
optional_headers = st.fixed_dictionaries(
    {},
    optional={
        "Accept-Language": header_text,
        "Cookie": header_text.map(lambda value: f"lang={value}"),
        "X-Forwarded-For": header_text,
        "Accept": header_text,
        "Origin": header_text,
    },
)
query_values = st.text(max_size=120) | st.sampled_from(["fr", "ru", "en", "", "%", "\x00"])
query_keys = st.sampled_from(["token", "lang", "session", "x", ""])
queries = st.dictionaries(query_keys, query_values, max_size=3)
PATHS = [
    "/",
    "/register",
    "/watch",
    "/booth",
    "/studio",
    "/stage",
    "/calendar.ics",
    "/api/event",
    "/api/delivery",
    "/api/recordings",
    "/hls/index.m3u8",
    "/healthz",
    "/metrics",
]
path_segment = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/?#"),
    min_size=1,
    max_size=40,
)


async def no_server_error(
    response: aiohttp.ClientResponse, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    body = await response.read()
    assert response.status < 500, f"{where}: {response.status} {body[:300]!r}"
    is_head = response.method == "HEAD"  # no body to read
    if response.url.path.startswith("/api/") and response.status >= 400 and not is_head:
        error = json.loads(body.decode("utf-8"))["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str), where
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert not tracebacks, f"{where}: {tracebacks[0].getMessage()}"


@pytest.fixture
async def node(start_server: StartServer) -> RunningServer:
    # Limits out of the way: the fuzz is about what each request does, not about 429s.
    return await start_server(
        registration_limits=RegistrationLimits(per_client=10**9, per_email=10**9, window_s=1)
    )


@pytest.fixture
async def healthy_after(node: RunningServer, http: aiohttp.ClientSession) -> Any:
    yield
    async with http.get(f"{node.url}/healthz") as response:
        assert response.status == 200


@FUZZ
@given(
    endpoint=st.sampled_from(["/api/registrations", "/api/registrations/lookup"]),
    body=st.one_of(
        json_values.map(lambda value: json.dumps(value).encode()),
        registration_like.map(lambda value: json.dumps(value, ensure_ascii=False).encode()),
        hostile_texts.map(lambda text: text.encode("utf-8", "surrogatepass")),
        st.binary(max_size=400),
    ),
    content_type=content_types,
    headers=optional_headers,
)
async def test_registration_endpoints_never_fail(
    node: RunningServer,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    healthy_after: None,
    endpoint: str,
    body: bytes,
    content_type: str,
    headers: dict[str, str],
) -> None:
    caplog.set_level(logging.WARNING)
    async with http.post(
        f"{node.url}{endpoint}",
        data=body,
        headers={**headers, "Content-Type": content_type},
    ) as response:
        await no_server_error(response, caplog, f"POST {endpoint} {body[:80]!r}")


@FUZZ
@given(path=st.sampled_from(PATHS), query=queries, headers=optional_headers)
async def test_pages_and_api_reads_never_fail(
    node: RunningServer,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    healthy_after: None,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
) -> None:
    caplog.set_level(logging.WARNING)
    url = URL(f"{node.url}{path}").with_query(query)
    async with http.get(url, headers=headers) as response:
        await no_server_error(response, caplog, f"GET {url}")


def real_tokens(node: RunningServer) -> list[str]:
    hour = timedelta(hours=1)
    signer = node.signer
    return [
        signer.issue(Role.ATTENDEE, subject="a", registration="a", ttl=hour),
        signer.issue(Role.MODERATOR, subject="m", ttl=hour),
    ]


@FUZZ
@given(
    prefix=st.sampled_from(["/hls", "/recordings", "/static", "/api", "/x"]),
    first=path_segment,
    second=path_segment,
    with_token=st.sampled_from([None, 0, 1, "junk"]),
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]),
)
async def test_files_and_unknown_routes_never_fail(
    node: RunningServer,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    healthy_after: None,
    prefix: str,
    first: str,
    second: str,
    with_token: int | str | None,
    method: str,
) -> None:
    caplog.set_level(logging.WARNING)
    raw = f"{node.url}{prefix}/{first}/{second}"
    if with_token is not None:
        token = real_tokens(node)[with_token] if isinstance(with_token, int) else with_token
        raw += f"?token={token}"
    async with http.request(method, URL(raw, encoded=True)) as response:
        await no_server_error(response, caplog, f"{method} {raw}")
