"""Benchmarks: what the server spends per subscriber, beside a baseline, and how fast an
attendee's page hears the event.

Never imported by the application or run by the test suite. Run from the repository root,
e.g. ``python -m bench.forwarding``; see bench/README.md.
"""
