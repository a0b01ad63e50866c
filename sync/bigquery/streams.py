"""The run's two streams, opportunities and call links, and how their result rows are keyed.

Each stream has its own keyset cursor, frozen bound and BigQuery result: opportunities are
ordered by ``(cursor_stamp, id)``, call links by ``(cursor_stamp, call_id, object_id)``, where
``cursor_stamp`` is a row's stamp capped at the run's frozen bound (``sync/bigquery/source_sql.py``).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from typing import Any

from sync.bigquery.cursor import Keyset
from sync.bigquery.slices import Shape

LINK_KEY_SEPARATOR = "\x1f"


class StreamKind(enum.StrEnum):
    """Which of the two streams."""

    OPPORTUNITIES = "opportunities"
    CALL_LINKS = "call_links"


def link_keyset(stamp: dt.datetime, call_id: str, object_id: str) -> Keyset:
    """A link's keyset: the separator sorts below every printable character, like the tuple order."""
    return Keyset(stamp, f"{call_id}{LINK_KEY_SEPARATOR}{object_id}")


def split_link_key(key: str) -> tuple[str, str]:
    call_id, _, object_id = key.partition(LINK_KEY_SEPARATOR)
    return call_id, object_id


def _opportunity_keyset(row: Mapping[str, Any]) -> Keyset:
    return Keyset(row["cursor_stamp"], _key(row["id"]))


def _link_keyset(row: Mapping[str, Any]) -> Keyset:
    return link_keyset(row["cursor_stamp"], _key(row["call_id"]), _key(row["object_id"]))


def _key(value: Any) -> str:
    # A NULL id sorts first in BigQuery's ascending order, as "" does here; such a row is
    # skipped by the transform, but it must not derail the cursor.
    return "" if value is None else str(value)


SHAPES: dict[StreamKind, Shape] = {
    StreamKind.OPPORTUNITIES: Shape(_opportunity_keyset),
    StreamKind.CALL_LINKS: Shape(_link_keyset),
}
