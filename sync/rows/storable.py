"""Source values in statements that row isolation does not cover: what Postgres accepts. Pure.

``sync/postgres/isolate.py`` leaves out a synced row whose value Postgres refuses. Every other
statement of a page carries values read from the source for the whole page at once: the keyset
cursor in ``sync_status``, a full resync's id list, the rejection records, a run's error text. One
refused value there fails the page's commit, and since the next tick reads the same page, the
sync would stop for good. So those statements only ever carry text for which :func:`fits_text`
holds, or a storable rendering (:func:`text`, :func:`json_text`).

Postgres text refuses two things a Python ``str`` can hold: NUL (22021; jsonb refuses the
``\\u0000`` escape too, 22P05) and a lone surrogate, which has no UTF-8 form (the driver cannot
encode it). BigQuery strings are valid UTF-8, so in practice only NUL arrives; both are covered
because the check costs the same.
"""

from __future__ import annotations

import json
from typing import Any

NUL = "\x00"
# How a NUL reads in a rendering: the escape Python and BigQuery's own SQL literals use.
NUL_RENDERED = "\\x00"


def fits_text(value: str) -> bool:
    """Whether Postgres text holds ``value`` exactly."""
    if NUL in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text(value: str) -> str:
    """``value`` itself when it fits, else a rendering that does: NUL as ``\\x00``, a lone surrogate as ``\\udXXX``.

    For records of a value (rejections, errors), never for a value that is synced or keyed on:
    the rendering of one value can equal another value.
    """
    if fits_text(value):
        return value
    return value.replace(NUL, NUL_RENDERED).encode("utf-8", "backslashreplace").decode("utf-8")


def json_text(value: Any) -> str:
    """``value`` as JSON text jsonb accepts: every string in it, keys too, rendered by :func:`text`.

    Values JSON has no type for (a date, a Decimal) are written as their ``str``.
    """
    return json.dumps(_storable(value), default=str, ensure_ascii=False, separators=(",", ":"))


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return {text(str(k)): _storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_storable(v) for v in value]
    return value
