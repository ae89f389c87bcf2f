"""Reading JSON that strangers send: HTTP bodies and WebSocket frames.

Python's `json.loads` is safe for data we wrote, not for data anyone can send:

- nesting a few thousand levels deep makes it raise `RecursionError`, which is
  not a `ValueError`, so it escapes the error handling of its callers (and any
  code walking the result recursively would fail the same way);
- an integer of more than 4,300 digits raises a plain `ValueError` (Python's
  limit on int conversion), not a `JSONDecodeError`, and numbers of a few
  hundred digits cost time to convert for no purpose;
- ``NaN`` and ``Infinity`` are not JSON, yet it accepts them;
- a ``\\ud800`` escape gives a string holding a lone surrogate, which cannot be
  encoded as UTF-8: echoing it in an error reply breaks the reply itself.

`loads` refuses all of these with one exception, `UntrustedJson`, whose message
is a sentence for the sender; a caller maps it to its own error (the HTTP API's
400 ``invalid_json``, the WebSocket's ``malformed``). `printable` makes any
string safe to put in a reply or a log line.

This module stands alone (the standard library only) so that every parse path
of the node can use it.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

#: Deeper than any message or body the node takes (they nest three or four levels).
MAX_DEPTH = 32
#: Characters of one number literal: an int64 has 19 digits, a double's repr ~24.
MAX_NUMBER_CHARS = 40

# A JSON string literal, unrolled so that the regex engine never backtracks; one left
# open runs to the end of the text, so that a failed match is never retried from each
# escaped quote inside it (which would take time quadratic in the length).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
# A \uD800-\uDFFF escape: only then can the result hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


class UntrustedJson(ValueError):
    """JSON text that is refused; the message says why, for the person who sent it."""


def nesting_depth(text: str) -> int:
    """How deep arrays and objects nest in `text` (brackets inside strings do not count).

    Counted without parsing, in time linear in the length, so that a document too deep
    to parse is refused before the parser recurses into it."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if not brackets:
        return 0
    return max(0, *accumulate(_BRACKET_STEP[char] for char in brackets))


def _number_checker(kind: type[int] | type[float], limit: int) -> Any:
    def convert(literal: str) -> int | float:
        if len(literal) > limit:
            raise UntrustedJson(
                f"a number of {len(literal)} characters is refused: at most {limit} are read"
            )
        number = kind(literal)
        if isinstance(number, float) and not math.isfinite(number):
            raise UntrustedJson(f"{literal} is too large for a number; send a finite number")
        return number

    return convert


def _refuse_constant(name: str) -> Any:
    raise UntrustedJson(f"{name} is not a JSON number; send a finite number")


def _has_lone_surrogate(value: Any, depth: int = 0) -> bool:
    # Bounded by MAX_DEPTH (checked before parsing), so this recursion is too.
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(
            _has_lone_surrogate(key, depth + 1) or _has_lone_surrogate(item, depth + 1)
            for key, item in value.items()
        )
    if isinstance(value, list):
        return any(_has_lone_surrogate(item, depth + 1) for item in value)
    return False


def loads(
    text: str | bytes,
    *,
    max_depth: int = MAX_DEPTH,
    max_number_chars: int = MAX_NUMBER_CHARS,
) -> Any:
    """The value of the JSON document `text`, or `UntrustedJson` saying what is wrong.

    Bytes must be UTF-8. The caller caps the size before calling: the work done here
    is linear in it."""
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise UntrustedJson("the text is not UTF-8") from None
    depth = nesting_depth(text)
    if depth > max_depth:
        raise UntrustedJson(f"JSON nested {depth} levels deep is refused: at most {max_depth}")
    try:
        value = json.loads(
            text,
            parse_int=_number_checker(int, max_number_chars),
            parse_float=_number_checker(float, max_number_chars),
            parse_constant=_refuse_constant,
        )
    except UntrustedJson:
        raise
    except json.JSONDecodeError as exc:
        raise UntrustedJson(
            f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except (ValueError, RecursionError) as exc:
        # Anything else the parser may raise on hostile input is still a refusal.
        raise UntrustedJson(f"not valid JSON: {printable(str(exc), 80)}") from None
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise UntrustedJson(
            "a string holds a lone UTF-16 surrogate (a \\ud800-\\udfff escape without its "
            "pair), which is not a character"
        )
    return value


def printable(value: object, limit: int = 80) -> str:
    """`value` as text safe to encode in any reply or log line: lone surrogates are
    written as escapes, and anything past `limit` characters is cut with an ellipsis."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = text[:limit] + "…"
    if _SURROGATE.search(text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
