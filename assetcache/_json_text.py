"""JSON text in, the same values out, each number spelled as it came: ``fill``'s command line.

``json.loads`` reads ``1.10`` as 1.1, ``1E2`` as 100.0 and ``1e400`` as inf, and ``json.dumps``
writes them back as ``1.1``, ``100.0`` and ``Infinity`` (which is not JSON). fill promises to
leave every field but the ref fields untouched, so its command line reads each number as a
``Verbatim`` holding its literal and writes that literal back as it is. It also finds where a
payload holds a lone surrogate, which no UTF-8 output can carry. Only the command line's
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


def lone_surrogate(payload: Any) -> str | None:
    """Where ``payload`` holds a lone surrogate (an unpaired ``\\ud800``-``\\udfff`` escape, or
    a byte that was not UTF-8), which no UTF-8 output can carry; None when it holds none."""
    fields = payload.items() if isinstance(payload, dict) else [(None, payload)]
    for name, value in fields:
        for text in _strings(value, name):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                where = "the payload" if name is None else f"field {_shown(name)}"
                return f"{where} holds {_shown(text[exc.start])}"
    return None


def _strings(value: Any, key: str | None) -> list[str]:
    """Every string in ``value`` (keys too, and ``key`` itself), without recursion."""
    found = [] if key is None else [key]
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            found += item.keys()
            todo += item.values()
        elif isinstance(item, list):
            todo += item
    return found


def _shown(text: str) -> str:
    """``text`` quoted, a lone surrogate written as its escape (it cannot be printed)."""
    return f'"{text.encode("utf-8", "backslashreplace").decode("utf-8")}"'


def _string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


_SEP = ", "
_SEP_TOKEN = Verbatim(_SEP)
_OPEN_OBJECT, _CLOSE_OBJECT = Verbatim("{"), Verbatim("}")
_OPEN_ARRAY, _CLOSE_ARRAY = Verbatim("["), Verbatim("]")
