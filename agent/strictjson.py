"""Strict JSON: what every JSON parser accepts, and nothing that exhausts the agent.

Python's `json` module accepts ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON at all), turns
``1e400`` into an infinite float, raises a bare `ValueError` for an integer of more than 4,300
digits, and recurses once per nesting level. `loads` refuses all of these with a `StrictJsonError`
whose message says what was wrong (never the document's content); `MAX_DEPTH` bounds nesting for
everything that walks the value afterwards.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

#: Deepest nesting accepted (objects and arrays), as for YAML inputs.
MAX_DEPTH: Final = 64
#: Most digits of an integer: far beyond any fact (a 64-bit value has 20), far below a DoS.
MAX_INT_DIGITS: Final = 100


class StrictJsonError(ValueError):
    """A document that is not strict, bounded JSON. `line` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.message = message
        self.line = line
        super().__init__(message)


def _constant(name: str) -> Any:
    raise StrictJsonError(f"{name} is not a JSON number")


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise StrictJsonError(f"an integer of more than {MAX_INT_DIGITS} digits")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJsonError("a number too large to represent")
    return value


#: One decoder for every document (`json.loads` with these hooks would build one per call).
_DECODER: Final = json.JSONDecoder(parse_constant=_constant, parse_int=_int, parse_float=_float)


def loads(text: str | bytes | bytearray) -> Any:
    """The value of a strict JSON document, nested at most `MAX_DEPTH` deep (bytes decoded as
    `json.loads` decodes them)."""
    if isinstance(text, bytes | bytearray):
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    elif not isinstance(text, str):
        raise TypeError(f"the JSON object must be str, bytes or bytearray, "
                        f"not {type(text).__name__}")
    try:
        if text.startswith("\ufeff"):  # as json.loads refuses it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        value = _DECODER.decode(text)
    except StrictJsonError:
        raise
    except json.JSONDecodeError as exc:
        message = f"not valid JSON: {exc.msg} (column {exc.colno})"
        raise StrictJsonError(message, exc.lineno) from None
    except RecursionError:
        raise StrictJsonError(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:  # anything else the decoder refuses
        raise StrictJsonError("not valid JSON") from None
    # Each level of nesting opens with one of these characters, so a document with no more
    # of them than MAX_DEPTH (a fact script's output has a dozen) needs no walk.
    if text.count("[") + text.count("{") > MAX_DEPTH and depth(value) > MAX_DEPTH:
        raise StrictJsonError(f"nested deeper than {MAX_DEPTH} levels")
    return value


_CONTAINERS: Final = (dict, list)


def depth(value: Any) -> int:
    """How deeply objects and arrays nest in `value` (a scalar is 0), without recursion; past
    `MAX_DEPTH` it stops counting (the answer is then ``MAX_DEPTH + 1``).

    Level by level: each level keeps only the containers of the one above, so a scalar costs
    a test in a comprehension rather than a trip through a stack (every host's facts pass here).
    """
    level, containers = 0, [value] if isinstance(value, _CONTAINERS) else []
    while containers and level <= MAX_DEPTH:
        level += 1
        below: list[Any] = []
        for item in containers:
            children = item.values() if isinstance(item, dict) else item
            below += [child for child in children if isinstance(child, _CONTAINERS)]
        containers = below
    return level


def dumps(value: Any, **kwargs: Any) -> str:
    """`json.dumps` that refuses NaN and infinities (`ValueError`) instead of writing them."""
    return json.dumps(value, allow_nan=False, **kwargs)
