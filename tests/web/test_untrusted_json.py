"""The one reader of JSON that strangers send: what it refuses, and that it refuses with
`UntrustedJson` (a ValueError) whatever the input, never another exception."""

from __future__ import annotations

import ast
import json
import sys
import time
from pathlib import Path

import pytest

from signaling import untrusted_json
from signaling.untrusted_json import (
    MAX_DEPTH,
    UntrustedJson,
    loads,
    nesting_depth,
    printable,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"type": "hello", "id": 1}', {"type": "hello", "id": 1}),
        ('{"a": [1, 2.5, -3e2, true, null, "x"]}', {"a": [1, 2.5, -300.0, True, None, "x"]}),
        ('{"brackets in text": "[[[[{{{{"}', {"brackets in text": "[[[[{{{{"}),
        ('{"escaped quote": "\\"[["}', {"escaped quote": '"[['}),
        ('"\\ud83d\\ude00"', "😀"),  # a surrogate pair is one character
        ('"\\\\ud800"', "\\ud800"),  # an escaped backslash, not an escape
        ("[" * MAX_DEPTH + "]" * MAX_DEPTH, json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)),
        (b'{"name": "\xd0\x90\xd0\xbb\xd0\xbb\xd0\xb0"}', {"name": "Алла"}),
    ],
)
def test_ordinary_json_is_read_as_json_loads_reads_it(text: str | bytes, value: object) -> None:
    assert loads(text) == value


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested 100000 levels deep"),
        ('{"a":' * 5000 + "1" + "}" * 5000, "nested 5000 levels deep"),
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), f"at most {MAX_DEPTH}"),
        ("1" * 5000, "a number of 5000 characters"),
        ('{"id": ' + "9" * 100_000 + "}", "a number of 100000 characters"),
        ('{"x": 0.' + "1" * 500 + "}", "a number of 502 characters"),
        ("[1e999]", "too large"),
        ('{"a": NaN}', "NaN is not a JSON number"),
        ("[-Infinity]", "-Infinity is not a JSON number"),
        ('{"id": "\\ud800"}', "lone UTF-16 surrogate"),
        ('{"\\udfff": 1}', "lone UTF-16 surrogate"),
        ('["ok", {"deep": ["\\ud83d"]}]', "lone UTF-16 surrogate"),
        ("{", "not valid JSON"),
        ("", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        ('{"a": 1} trailing', "not valid JSON"),
    ],
)
def test_hostile_json_is_refused_with_a_sentence(text: str | bytes, said: str) -> None:
    with pytest.raises(UntrustedJson) as refused:
        loads(text)
    assert said in str(refused.value)
    # The sentence itself can always be sent back.
    str(refused.value).encode("utf-8")


def test_a_refusal_is_a_value_error_for_callers_that_catch_those() -> None:
    with pytest.raises(ValueError):
        loads("[" * 10_000)


def test_depth_is_counted_outside_strings_only() -> None:
    assert nesting_depth('{"a": "[[[[[[", "b": [{"c": []}]}') == 4
    assert nesting_depth('"}}}}"') == 0
    assert nesting_depth("]]]]") == 0


def test_printable_makes_any_string_encodable_and_short() -> None:
    assert printable("\ud800id").encode("utf-8") == b"\\ud800id"
    assert printable("x" * 100, 10) == "x" * 10 + "…"
    assert printable(12) == "12"


@pytest.mark.parametrize(
    "text",
    [
        '"' + '\\"' * 32_000,  # one string left open, full of escaped quotes
        '"' + '\\"' * 32_000 + "\\",
        '["' + 'a\\"' * 20_000,
        '"\\' * 30_000,
        '"' * 60_000,
        "[" * 30_000 + '"' + "]" * 30_000,
        '{"a":' * 10_000,
    ],
)
def test_hostile_text_costs_time_linear_in_its_length(text: str) -> None:
    # 64 KB (the largest WebSocket message) in well under a second even on a loaded
    # machine; a scan that retried at each quote took ~40 s on the first of these.
    started = time.perf_counter()
    with pytest.raises(UntrustedJson):
        loads(text)
    assert time.perf_counter() - started < 2.0


def test_the_module_stands_alone_so_every_parse_path_can_use_it() -> None:
    source = Path(untrusted_json.__file__).read_text(encoding="utf-8")
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
