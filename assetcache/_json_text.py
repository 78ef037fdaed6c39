"""JSON text in, the same values out, each number spelled as it came: ``fill``'s command line.

``json.loads`` reads ``1.10`` as 1.1, ``1E2`` as 100.0 and ``1e400`` as inf, and ``json.dumps``
writes them back as ``1.1``, ``100.0`` and ``Infinity`` (which is not JSON). fill promises to
leave every field but the ref fields untouched, so its command line reads each number as a
``Verbatim`` holding its literal and writes that literal back as it is. Only the command line's
text-in, text-out path uses this module: ``AssetCache.fill`` takes and returns plain values.
"""

from __future__ import annotations

import json
from typing import Any


class Verbatim:
    """JSON text written out as it is: a number (or Python's ``NaN``/``Infinity``) as it was
    spelled. Deliberately not a ``str``: fill must see a number where a path is expected."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text  # error messages quote the value as the payload wrote it

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Verbatim) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def loads(text: str) -> Any:
    """The value of one JSON text, its numbers as ``Verbatim``; json.loads's errors (ValueError,
    and RecursionError for nesting deeper than its parser goes)."""
    return json.loads(text, parse_float=Verbatim, parse_int=Verbatim, parse_constant=Verbatim)


def dumps(value: Any) -> str:
    """JSON text for ``value`` as ``json.dumps(value, ensure_ascii=False)`` writes it, each
    ``Verbatim`` as its text. A loop, not recursion: whatever nesting ``loads`` accepted is
    written, however deep the caller's stack already is."""
    out: list[str] = []
    todo: list[Any] = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, Verbatim):
            out.append(item.text)
        elif isinstance(item, dict):
            todo.append(_CLOSE_OBJECT)
            for index, (key, member) in reversed(list(enumerate(item.items()))):
                todo += [member, Verbatim(f"{_SEP if index else ''}{_string(key)}: ")]
            todo.append(_OPEN_OBJECT)
        elif isinstance(item, list):
            todo.append(_CLOSE_ARRAY)
            for index, member in reversed(list(enumerate(item))):
                todo += [member, _SEP_TOKEN] if index else [member]
            todo.append(_OPEN_ARRAY)
        else:  # str, bool, None (and a plain number, should one ever come)
            out.append(json.dumps(item, ensure_ascii=False))
    return "".join(out)


def _string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


_SEP = ", "
_SEP_TOKEN = Verbatim(_SEP)
_OPEN_OBJECT, _CLOSE_OBJECT = Verbatim("{"), Verbatim("}")
_OPEN_ARRAY, _CLOSE_ARRAY = Verbatim("["), Verbatim("]")
