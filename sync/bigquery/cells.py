"""A result page's JSON cells to Python values, one converter per column. Pure.

The client converts every cell through a generic dispatcher that looks up the field's type and
mode again for each cell: about 5 µs a cell, 100 µs a row of the run's ~20 columns, more than
the transform and the write of that row together (bench/README.md). The run's results hold only
flat scalar columns, so a page's raw response (``Page.raw_page``) is converted here with the
converter of each column chosen once, producing exactly the values the client would: the same
functions on the same text (``tests/bigquery/test_cells.py`` compares both on every type). A
schema with any other type or mode returns None, and the caller lets the client convert it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _timestamp(value: str) -> dt.datetime:
    # Results come with formatOptions.useInt64Timestamp: microseconds since the epoch, in UTC.
    return _EPOCH + dt.timedelta(microseconds=int(value))


def _boolean(value: str) -> bool:
    return value.lower() in ("t", "true", "1")


def _date(value: str) -> dt.date:
    # BigQuery renders a DATE as YYYY-MM-DD, which fromisoformat reads like the client's strptime.
    return dt.date.fromisoformat(value)


# By the type names the API uses (legacy and standard); the client applies the same functions.
_BY_TYPE: dict[str, Callable[[str], Any] | None] = {
    "STRING": None,
    "INTEGER": int,
    "INT64": int,
    "FLOAT": float,
    "FLOAT64": float,
    "NUMERIC": Decimal,
    "BIGNUMERIC": Decimal,
    "BOOLEAN": _boolean,
    "BOOL": _boolean,
    "TIMESTAMP": _timestamp,
    "DATE": _date,
}

Converter = Callable[[Sequence[Mapping[str, Any]]], list[Any]]


def row_converter(schema: Sequence[Any]) -> Converter | None:
    """A function from a JSON row's cells (``row["f"]``) to its values, or None when a column needs the client.

    Args:
        schema: the result's ``SchemaField`` list (``field_type``, ``mode``, ``timestamp_precision``).
    """
    converters: list[Callable[[str], Any] | None] = []
    for field in schema:
        kind = str(field.field_type).upper()
        if kind not in _BY_TYPE or str(field.mode or "NULLABLE").upper() != "NULLABLE":
            return None
        precision = getattr(field, "timestamp_precision", None)
        if kind == "TIMESTAMP" and getattr(precision, "value", precision) is not None:
            return None  # picosecond timestamps stay text in the client
        converters.append(_BY_TYPE[kind])
    plan = tuple((i, to_python) for i, to_python in enumerate(converters) if to_python is not None)

    def convert(cells: Sequence[Mapping[str, Any]]) -> list[Any]:
        values = [cell["v"] for cell in cells]
        for i, to_python in plan:
            value = values[i]
            if value is not None:
                values[i] = to_python(value)
        return values

    return convert
