"""The endpoints operators and pages rely on: /api/event, /healthz, /metrics, page headers."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import timedelta

import aiohttp

from signaling.registration import NewRegistration
from signaling.store import SqliteStore
from signaling.tokens import Role
from tests.support.server import RunningServer, StartServer

SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? '
    r"(-?[0-9.e+]+|NaN|[+-]Inf)$"
)


async def test_event_api_gives_the_program_with_its_start_as_an_instant(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{server.url}/api/event") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        event = await response.json()
    assert event["id"] == server.event.id
    assert event["title"]["en"] == "Shared Historical Memory: Resistance Movement"
    assert event["timezone"] == "Europe/Brussels"
    # 14:00 in Brussels in June is 12:00 UTC (summer time).
    assert event["starts_at_utc"].endswith("T12:00:00Z")
    speakers = [s for session in event["sessions"] for s in session["speakers"]]
    assert len(speakers) == 13
    assert {s["language"] for s in speakers} == {"ru", "fr"}


async def test_healthz_is_ok_when_the_store_answers(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{server.url}/healthz") as response:
        assert response.status == 200
        assert (await response.json())["status"] == "ok"


async def test_healthz_is_503_when_the_store_is_gone(
    start_server: StartServer, http: aiohttp.ClientSession, tmp_path
) -> None:
    store = SqliteStore(tmp_path / "own.sqlite3")
    server = await start_server(store=store)
    await store.close()
    async with http.get(f"{server.url}/healthz") as response:
        assert response.status == 503
        body = await response.json()
    assert body["status"] == "unavailable"


async def test_metrics_are_in_prometheus_text_format(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        f"{server.url}/api/registrations",
        json={"name": "Élise", "email": "elise@example.org", "language": "fr"},
    ) as response:
        assert response.status == 201
    async with http.get(f"{server.url}/api/event") as response:
        assert response.status == 200
    async with http.get(f"{server.url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()

    assert text.endswith("\n")
    families: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            families[name] = kind
            continue
        assert SAMPLE.match(line), line
        assert line.split("{")[0].split(" ")[0] in families, line
    assert families["dragoman_http_requests_total"] == "counter"
    assert families["dragoman_registrations_created_total"] == "counter"
    assert families["dragoman_registrations"] == "gauge"
    # The streamer's numbers, from the live service every node runs.
    assert families["dragoman_streamer_subscribers"] == "gauge"
    assert families["dragoman_streamer_output_packets_total"] == "counter"
    assert families["dragoman_streamer_forwarding_errors_total"] == "counter"
    assert families["dragoman_streamer_rtcp_errors_total"] == "counter"
    assert families["dragoman_streamer_departed_collections_total"] == "counter"
    assert "dragoman_streamer_departed_collection_seconds_total 0.0\n" in text
    # The process's own, from the library.
    assert families["process_cpu_seconds_total"] == "counter"
    assert families["process_resident_memory_bytes"] == "gauge"
    # The node's event loop: at least the task answering this scrape.
    tasks = re.search(r"^dragoman_asyncio_tasks (\S+)$", text, re.MULTILINE)
    assert tasks is not None and float(tasks.group(1)) >= 1
    assert 'dragoman_live_clients{role="attendee"} 0.0' in text
    assert 'dragoman_streamer_output_live{kind="audio",output="floor"} 0.0' in text
    assert "dragoman_registrations_created_total 1.0\n" in text
    assert "dragoman_registrations 1.0\n" in text
    assert (
        'dragoman_http_requests_total{method="POST",route="/api/registrations",status="201"} 1.0'
        in text
    )


async def test_other_parts_of_the_node_can_publish_metrics(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    from signaling.app import METRICS_KEY
    from signaling.metrics import Readings

    registry = server.app[METRICS_KEY]
    registry.register(
        Readings(
            "dragoman_test_outputs",
            "Outputs per kind.",
            lambda: [({"kind": "audio"}, 3), ({"kind": "video"}, 1)],
            labels=("kind",),
        )
    )
    async with http.get(f"{server.url}/metrics") as response:
        text = await response.text()
    assert 'dragoman_test_outputs{kind="audio"} 3.0' in text
    assert "# TYPE dragoman_test_outputs gauge" in text


class CountingStore(SqliteStore):
    """The SQLite store, counting how often the whole list of registrations is read."""

    full_reads = 0

    async def registrations(self, event_id: str) -> list:
        CountingStore.full_reads += 1
        return await super().registrations(event_id)


async def test_metrics_never_read_the_whole_list_of_registrations(
    start_server: StartServer, http: aiohttp.ClientSession, tmp_path
) -> None:
    async with CountingStore(tmp_path / "counted.sqlite3") as store:
        server = await start_server(store=store)
        for i in range(30):
            await store.register(
                NewRegistration.create(
                    event_id=server.event.id,
                    name=f"P{i}",
                    email=f"p{i}@example.org",
                    language="fr",
                    languages=["ru", "fr"],
                )
            )
        CountingStore.full_reads = 0
        for _ in range(3):
            async with http.get(f"{server.url}/metrics") as response:
                assert "dragoman_registrations 30.0\n" in await response.text()
        assert CountingStore.full_reads == 0


async def test_pages_forbid_foreign_scripts_and_referrers(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    for path in ("/", "/register"):
        async with http.get(f"{server.url}{path}") as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
            assert response.headers["Referrer-Policy"] == "no-referrer"
            html = await response.text()
        assert "{{" not in html


async def test_page_language_follows_accept_language_and_query(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(
        f"{server.url}/register", headers={"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"}
    ) as response:
        html = await response.text()
    assert '<html lang="ru">' in html
    assert ">Предпочитаемый язык<" in html
    async with http.get(
        f"{server.url}/register?lang=fr", headers={"Accept-Language": "ru"}
    ) as response:
        html = await response.text()
        assert response.cookies["lang"].value == "fr"
    assert '<html lang="fr">' in html
    assert ">Langue préférée<" in html


async def test_access_log_never_shows_a_token(
    server: RunningServer, http: aiohttp.ClientSession, caplog
) -> None:
    token = server.signer.issue(Role.MODERATOR, subject="m", ttl=timedelta(hours=1))
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        async with http.get(f"{server.url}/register?token={token}&lang=fr") as response:
            assert response.status == 200
        # The access log line is written after the response is sent.
        for _ in range(50):
            if any(r.name == "aiohttp.access" for r in caplog.records):
                break
            await asyncio.sleep(0.02)
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert lines, "no access log line"
    assert any("/register?token=[redacted]&lang=fr" in line for line in lines)
    assert all(token not in line for line in lines)


async def test_language_switcher_keeps_the_rest_of_the_query(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{server.url}/register?token=abc.def&lang=fr") as response:
        html = await response.text()
    links = dict(re.findall(r'<a href="([^"]+)" hreflang="(\w+)"', html))
    assert {lang: href for href, lang in links.items()} == {
        "en": "/register?token=abc.def&amp;lang=en",
        "fr": "/register?token=abc.def&amp;lang=fr",
        "ru": "/register?token=abc.def&amp;lang=ru",
    }
    assert 'hreflang="fr" lang="fr" aria-current="true"' in html


async def test_static_modules_are_served_as_javascript_and_nothing_outside(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{server.url}/static/common/i18n.js") as response:
        assert response.status == 200
        assert response.content_type in ("text/javascript", "application/javascript")
    for path in ("/static/../settings.py", "/static/%2e%2e/settings.py", "/static/common/"):
        async with http.get(f"{server.url}{path}") as response:
            assert response.status in (403, 404), path


def test_a_catalog_cannot_break_out_of_its_script_element() -> None:
    from signaling.pages import catalog_script

    script = catalog_script("en")
    assert script.count("</script>") == 1
    assert "<" not in script[len('<script type="application/json" id="i18n-catalog">') : -9]
