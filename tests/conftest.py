"""Fixtures shared by every test folder live in tests/support/; import them here."""

pytest_plugins = [
    "tests.support.redis_server",
    "tests.support.server",
    "tests.support.browser",
    "tests.support.smtp_server",
    "tests.support.tones",
    "tests.support.turn_server",
]
