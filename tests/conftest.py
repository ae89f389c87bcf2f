"""Fixtures shared by every test folder live in tests/support/; import them here."""

import gc

import pytest

pytest_plugins = [
    "tests.support.redis_server",
    "tests.support.server",
    "tests.support.browser",
    "tests.support.smtp_server",
    "tests.support.tones",
    "tests.support.turn_server",
]


def pytest_collection_finish(session: pytest.Session) -> None:
    """What every test shares from here on (the modules, their classes, the collected
    tests: some 190,000 objects) leaves the collector's sight, as `dragoman serve` does
    once started (signaling/cli.py): each full collection (the streamer fixtures' own, the
    SFU's for departed peers, the interpreter's) walks only what the tests make."""
    gc.collect()
    gc.freeze()
