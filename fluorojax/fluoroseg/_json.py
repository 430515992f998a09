"""Streaming JSON helper for the reader: what kind of value begins at a given path.

``ijson.items`` yields nothing for a path that holds no list, so a case file whose ``images``
is an object, or an annotation file that is not a list, would read as empty. ``note_kinds``
passes the parse events through and records the first event at each watched prefix, so the
reader can tell "an empty list" from "no list at all" after streaming the file once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

KINDS = {
    "start_map": "an object",
    "start_array": "a list",
    "string": "a string",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
    None: "nothing",
}
"""The JSON kind each ijson start event begins (None: no event at all)."""


def note_kinds(
    events: Iterable[tuple[str, str, Any]], seen: dict[str, str], prefixes: tuple[str, ...]
) -> Iterator[tuple[str, str, Any]]:
    """Pass ijson ``(prefix, event, value)`` events through, storing in ``seen`` the first event
    at each of ``prefixes`` ("" is the top-level value)."""
    for prefix, event, value in events:
        if prefix in prefixes:
            seen.setdefault(prefix, event)
        yield prefix, event, value
