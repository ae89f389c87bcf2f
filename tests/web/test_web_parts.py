"""The pieces of the web layer on their own: translations, language choice, metrics
rendering and log redaction."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from signaling.i18n import LOCALES_DIR, SUPPORTED_LANGUAGES, catalog, negotiate, translate
from signaling.logs import JsonFormatter, TextFormatter, configure_logging, redact
from signaling.metrics import Readings, render
from signaling.pages import STATIC_DIR

TOKEN = "eyJ2IjoxLCJyIjoiYXR0ZW5kZWUifQ.c2lnbmF0dXJl"


def test_every_language_has_every_key_of_the_english_catalog() -> None:
    english = json.loads((LOCALES_DIR / "en.json").read_text("utf-8"))
    for lang in SUPPORTED_LANGUAGES:
        own = json.loads((LOCALES_DIR / f"{lang}.json").read_text("utf-8"))
        assert set(own) == set(english), lang
        for key, text in own.items():
            assert text.strip(), (lang, key)
            assert set(re.findall(r"\{(\w+)\}", text)) == set(
                re.findall(r"\{(\w+)\}", english[key])
            ), (lang, key)


def test_every_key_used_by_a_page_exists() -> None:
    used: set[str] = set()
    for path in STATIC_DIR.glob("*.html"):
        used |= set(re.findall(r"\{\{\s*t:([A-Za-z0-9_.-]+)\s*\}\}", path.read_text("utf-8")))
    for path in [*STATIC_DIR.glob("*.js"), *STATIC_DIR.glob("common/*.js")]:
        used |= set(
            re.findall(r"""\bt\(\s*["'`]([a-z_]+\.[a-z_.]+)["'`]""", path.read_text("utf-8"))
        )
    assert used
    for lang in SUPPORTED_LANGUAGES:
        assert used <= set(catalog(lang)), (lang, used - set(catalog(lang)))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "en"),
        ("", "en"),
        ("fr-BE,fr;q=0.9,en;q=0.8", "fr"),
        ("de-DE,de;q=0.9,ru;q=0.8,en;q=0.7", "ru"),
        ("en;q=0.2, fr;q=0.9", "fr"),
        ("RU", "ru"),
        ("de, *;q=0.5", "en"),
        ("fr;q=0, ru", "ru"),
        ("fr;q=abc, ru;q=0.5", "ru"),
        (";;,,", "en"),
    ],
)
def test_accept_language_picks_the_best_supported_language(
    header: str | None, expected: str
) -> None:
    assert negotiate(header) == expected


def test_translate_fills_placeholders() -> None:
    assert translate("en", "errors.too_long", max=200) == (
        "This is too long (at most 200 characters)."
    )
    assert translate("ru", "register.name") == "Имя"


def test_readings_escape_label_values_and_refuse_labels_they_were_not_given() -> None:
    registry = CollectorRegistry()
    values = [({"route": '/a"b\\c\n'}, 1), ({"route": "/x"}, 2)]
    registry.register(Readings("demo", "A demo\nreading.", lambda: values, labels=("route",)))
    text = render(registry).decode()
    assert "# HELP demo A demo\\nreading." in text
    assert 'demo{route="/a\\"b\\\\c\\n"} 1.0' in text
    assert 'demo{route="/x"} 2.0' in text
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(Readings("demo", "again", lambda: 0))
    values.append(({"route": "/y", "extra": "z"}, 3))
    with pytest.raises(ValueError, match="takes labels"):
        render(registry)


@pytest.mark.parametrize(
    "line",
    [
        f"GET /watch?token={TOKEN} 200",
        f"GET /booth?lang=fr&token={TOKEN}&x=1 200",
        f"Authorization: Bearer {TOKEN}",
        f'{{"token": "{TOKEN}"}}',
        f"secret={TOKEN}",
    ],
)
def test_redact_masks_credentials(line: str) -> None:
    assert TOKEN not in redact(line)
    assert "[redacted]" in redact(line)


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, given back to pytest as it was found."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    aioice_level = logging.getLogger("aioice").level
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("aioice").setLevel(aioice_level)


def test_ice_check_chatter_stays_out_of_the_log_unless_debugging(
    root_logger: logging.Logger,
) -> None:
    """aioice logs every ICE check at INFO, several lines per attendee joining."""
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    aioice = logging.getLogger("aioice.ice")
    aioice.info("Connection(3) Check CandidatePair(...) State.WAITING -> State.IN_PROGRESS")
    aioice.warning("something aioice warns about")
    logging.getLogger("streamer.sfu").info("subscriber x lost its connection")
    messages = [json.loads(line)["message"] for line in stream.getvalue().splitlines()]
    assert messages == ["something aioice warns about", "subscriber x lost its connection"]

    stream = io.StringIO()
    configure_logging("json", logging.DEBUG, stream=stream)
    aioice.info("ICE completed")
    assert json.loads(stream.getvalue())["message"] == "ICE completed"


def test_json_logs_are_one_object_per_line_and_never_carry_a_token(
    root_logger: logging.Logger,
) -> None:
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    logging.getLogger("dragoman.test").info(
        "opened /studio?token=%s", TOKEN, extra={"link": f"/stage?token={TOKEN}", "n": 3}
    )
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "info"
    assert entry["logger"] == "dragoman.test"
    assert entry["n"] == 3
    assert TOKEN not in lines[0]


def test_text_logs_redact_too() -> None:
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "GET /watch?token=%s", (TOKEN,), None
    )
    assert TOKEN not in TextFormatter().format(record)
    assert TOKEN not in JsonFormatter().format(record)


def test_auto_log_format_is_json_off_a_terminal(root_logger: logging.Logger) -> None:
    stream = io.StringIO()  # not a TTY
    configure_logging("auto", stream=stream)
    logging.getLogger("x").warning("hello")
    assert json.loads(stream.getvalue())["message"] == "hello"


def test_registration_limits_come_from_the_settings(tmp_path, monkeypatch) -> None:
    from signaling.app import REGISTRATION_LIMITS_KEY, create_app
    from signaling.settings import load_settings

    monkeypatch.setenv("DRAGOMAN_REGISTRATIONS_PER_CLIENT", "3")
    monkeypatch.setenv("DRAGOMAN_REGISTRATIONS_PER_EMAIL", "2")
    monkeypatch.setenv("DRAGOMAN_REGISTRATION_WINDOW_S", "30")
    app = create_app(load_settings(data_dir=tmp_path), extensions=())
    limits = app[REGISTRATION_LIMITS_KEY]
    assert (limits.per_client, limits.per_email, limits.window_s) == (3, 2, 30.0)
