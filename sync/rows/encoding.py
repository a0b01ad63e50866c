"""COPY text format: one canonical rendering of stored values.

The same text is streamed to Postgres and digested for change detection, so the hash is
exactly "what we would write" and costs no second serialisation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any

NULL = "\\N"
_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\x00": ""})


def text(value: str | None) -> str:
    """A text field. ``translate`` walks every character, so only escape when needed."""
    if value is None:
        return NULL
    if "\\" in value or "\n" in value or "\r" in value or "\t" in value or "\x00" in value:
        return value.translate(_ESCAPES)
    return value


def field(value: Any) -> str:
    """Any supported value as one field."""
    if value is None:
        return NULL
    if isinstance(value, str):
        return text(value)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, bytes):
        return "\\\\x" + value.hex()
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return text(str(value))


def line(values: Sequence[Any]) -> str:
    return "\t".join(map(field, values)) + "\n"


def chunks(lines: Iterable[str], rows_per_chunk: int = 1000) -> Iterator[str]:
    """Group lines so each COPY protocol message carries ~1k rows, not one."""
    batch: list[str] = []
    for item in lines:
        batch.append(item)
        if len(batch) >= rows_per_chunk:
            yield "".join(batch)
            batch.clear()
    if batch:
        yield "".join(batch)
