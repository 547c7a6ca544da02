"""What a stored JSON value (`properties`) may hold, shared by both wire formats.

Both APIs store `properties` as jsonb and export it to a BigQuery JSON column, so the same limits
apply to each, and they are documented (README, OpenAPI):

- at most `MAX_DEPTH` (32) levels of objects and arrays, `properties` itself being the first:
  our encoders stop at 255 levels and BigQuery at 500, so a deep value would fail after the 2xx;
- keys of at most `MAX_KEY_LENGTH` (255) characters;
- integers between -2^63 and 2^64-1: wider ones are kept exactly by one decoder and turned into
  floats by another, and BigQuery holds neither; non-finite numbers (1e400) are refused;
- no NUL (`\\u0000`, PostgreSQL refuses it) and no unpaired UTF-16 surrogate (`\\ud800`, not
  encodable as UTF-8) in keys or strings.

The fast decoders (orjson, msgspec) already refuse unpaired surrogates and 1e400, but only as
"not JSON" for the whole body. `lenient_loads` reads such a body anyway, keeping what no decoder
can hold as `BadNumber` or surrogate-bearing strings, so the checks below can name the field and,
in a batch, reject only the event that carries it.
"""

import json
import math
from typing import Any

MAX_DEPTH = 32
MAX_KEY_LENGTH = 255
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
MAX_PROBLEMS = 10  # per value: enough to fix a payload, bounded so a hostile one cannot inflate the answer
_SEGMENT_MAX = 64  # characters of a key shown in a field path

_DEPTH_MESSAGE = f"nests deeper than {MAX_DEPTH} levels of objects and arrays"
_KEY_MESSAGE = f"key must be at most {MAX_KEY_LENGTH} characters"
_INT_MESSAGE = "integer out of range (-2^63 to 2^64-1); send larger numbers as strings"
_NUMBER_MESSAGE = "number out of range (must be a finite 64-bit float or integer)"
_NUL_MESSAGE = "must not contain NUL characters (\\u0000)"
SURROGATE_MESSAGE = "must be valid Unicode: no invalid UTF-8 and no unpaired surrogates (\\ud800-\\udfff)"


class BadNumber:
    """A number literal that no float or 64-bit integer holds, kept as text by `lenient_loads`."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class NotJson(ValueError):
    """The text is not JSON even leniently read (syntax, NaN/Infinity, too deep)."""


def _constant(name: str) -> Any:
    raise NotJson(f"{name} is not JSON")


def _float(text: str) -> float | BadNumber:
    value = float(text)
    return value if math.isfinite(value) else BadNumber(text)


def _int(text: str) -> int | BadNumber:
    try:
        return int(text)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        return BadNumber(text)


def lenient_loads(body: bytes | str) -> Any:
    """Decode JSON that the fast decoders refused only for values we cannot hold.

    Slow (the stdlib decoder), so only for bodies the fast path already rejected. Raises NotJson
    when the text is not JSON at all.
    """
    try:
        # Invalid UTF-8 inside a string becomes lone surrogates there, which the checks then name.
        text = body.decode("utf-8", "surrogateescape") if isinstance(body, bytes) else body
        return json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise NotJson(str(exc)) from None


def readable(text: str, limit: int = _SEGMENT_MAX) -> str:
    """`text` made safe to echo in an answer: surrogates escaped, cut to `limit` characters."""
    if len(text) > limit:
        text = text[:limit] + "…"
    if "\x00" in text:
        text = text.replace("\x00", "\\u0000")
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def string_problem(value: str) -> str | None:
    """The message for a string (or key) that cannot be stored, else None."""
    if "\x00" in value:
        return _NUL_MESSAGE
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return SURROGATE_MESSAGE
    return None


def _scalar_problem(value: Any) -> str | None:
    kind = type(value)
    if kind is str:
        return string_problem(value)
    if kind is int:
        return None if INT_MIN <= value <= INT_MAX else _INT_MESSAGE
    if kind is float:
        return None if math.isfinite(value) else _NUMBER_MESSAGE
    if kind is BadNumber:
        return _NUMBER_MESSAGE
    return None


def _path(node: tuple | str) -> str:
    """Materialize a path kept as nested (parent, segment) pairs: built only for a finding."""
    segments = []
    while type(node) is tuple:
        node, segment = node
        segments.append(f"[{segment}]" if type(segment) is int else "." + readable(segment))
    return node + "".join(reversed(segments))  # type: ignore[operator]  # a str once every pair is unwrapped


def value_problems(value: Any, path: str, *, max_depth: int | None = MAX_DEPTH) -> list[tuple[str, str]]:
    """[(field path, message), ...] for everything in `value` that breaks the limits above.

    `value` itself is level 1; `max_depth=None` checks everything but depth. Iterative, so any
    depth a decoder produced is walked without recursion; stops after MAX_PROBLEMS findings.
    """
    limit = max_depth if max_depth is not None else float("inf")
    problems: list[tuple[str, str]] = []
    stack: list[tuple[Any, tuple | str, int]] = [(value, path, 1)]
    while stack and len(problems) < MAX_PROBLEMS:
        item, where, level = stack.pop()
        kind = type(item)
        if kind is dict or kind is list:
            if level > limit:
                problems.append((_path(where), _DEPTH_MESSAGE))
            elif kind is list:
                stack.extend((child, (where, i), level + 1) for i, child in reversed(list(enumerate(item))))
            else:
                for key, child in reversed(item.items()):
                    child_where = (where, key)
                    if len(key) > MAX_KEY_LENGTH:
                        problems.append((_path(child_where), _KEY_MESSAGE))
                    elif (message := string_problem(key)) is not None:
                        problems.append((_path(child_where), f"key {message}"))
                    stack.append((child, child_where, level + 1))
        elif (message := _scalar_problem(item)) is not None:
            problems.append((_path(where), message))
    return problems[:MAX_PROBLEMS]


def object_fine(value: dict, *, nul_possible: bool) -> bool:
    """True when `value` (a decoded object) is certainly storable; the common flat case is cheap.

    Strings are only scanned when the body held a `\\u0000` escape (`nul_possible`): the strict
    decoders this runs after refuse unpaired surrogates, so NUL is all a string can hide.
    """
    for key, item in value.items():
        if len(key) > MAX_KEY_LENGTH:
            return False
        kind = type(item)
        if kind is int:
            if not INT_MIN <= item <= INT_MAX:
                return False
        elif kind is dict or kind is list:
            return not value_problems(value, "")
    return not (nul_possible and value_problems(value, ""))
