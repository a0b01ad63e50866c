"""Parse rules: one source value to the value we store, or None when it cannot be stored. Pure.

``sync/rows/stored.py`` names one of these per stored column. A rule never raises on bad input: the
caller records why a present value came back as None.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sync.rows.limits import round_half_up

_CENTS = Decimal("0.01")
_SCORE_MIN, _SCORE_MAX = Decimal(0), Decimal(100)
# Dates outside this window are placeholders ("0001-01-01", "9999-12-31"), not forecasts.
_MIN_YEAR, _MAX_YEAR = 1900, 2999


def as_is(value: Any) -> Any:
    """The value unchanged (the BigQuery client already hands back the stored type)."""
    return value


def flag(value: Any) -> bool:
    """A BOOL column; NULL counts as false."""
    return bool(value)


def text(value: Any) -> str | None:
    """Stripped text; None when empty. Postgres text cannot hold NUL, so it is dropped."""
    if value is None:
        return None
    stripped = str(value).replace("\x00", "").strip()
    return stripped or None


def source_id(value: Any) -> str | None:
    """An id exactly as the source holds it; None when absent or blank.

    Not stripped: the stored id, the link ids, the keyset cursor and a full resync's list of
    source ids must all be the same string, and the last two come from BigQuery verbatim.
    ``' 006A'`` and ``'006A'`` are two ids.
    """
    if value is None:
        return None
    exact = value if isinstance(value, str) else str(value)
    return exact if exact.strip() else None


def has_nul(value: Any) -> bool:
    return isinstance(value, str) and "\x00" in value


def amount(value: Any) -> Decimal | None:
    """NUMERIC, FLOAT64 or numeric text rounded to cents; None when not a number.

    Rounded as Postgres rounds (half away from zero) so hashes agree with stored values; whether
    the rounded value fits ``numeric(18,2)`` is the column's check (``limits.AMOUNT``).
    """
    number = _decimal(value)
    return None if number is None else round_half_up(number, 2)


def close_date(value: Any) -> dt.date | None:
    """DATE, TIMESTAMP (taken in UTC) or ISO text to a date; None for junk or placeholders."""
    result: dt.date | None
    if isinstance(value, dt.datetime):
        result = (value.astimezone(dt.UTC) if value.tzinfo else value).date()
    elif isinstance(value, dt.date):
        result = value
    elif isinstance(value, str):
        stripped = value.strip()
        try:
            result = dt.date.fromisoformat(stripped[:10]) if len(stripped) >= 10 else None
        except ValueError:
            result = None
    else:
        result = None
    if result is None or not _MIN_YEAR <= result.year <= _MAX_YEAR:
        return None
    return result


def health_score(value: Any) -> Decimal | None:
    """A 0-100 score with two decimals; None when absent, not a number, or out of range."""
    # Range-check before rounding: 100.001 is out of range, not 100.00.
    score = _decimal(value)
    if score is None or not _SCORE_MIN <= score <= _SCORE_MAX:
        return None
    return score.quantize(_CENTS, rounding=ROUND_HALF_UP)


def metadata_json(raw: Mapping[str, Any]) -> str:
    """The ``metadata`` JSONB text: account details and stage history as BigQuery rendered them.

    Assembled from JSON fragments rather than parsed and re-serialised: per-row JSON work was
    most of the write path's cost (bench/README.md).
    """
    parts: list[str] = []
    details = raw.get("account_details")
    if isinstance(details, str) and details.startswith("{"):
        parts.append(f'"account":{details}')
    history = raw.get("stage_history")
    if isinstance(history, str) and history.startswith("["):
        parts.append(f'"stage_history":{history}')
    for key in ("account_id", "owner_id"):
        value = raw.get(key)
        if value is not None:
            parts.append(f'"{key}":{_json_string(str(value))}')
    if raw.get("owner_active") is not None:
        parts.append(f'"owner_active":{"true" if raw["owner_active"] else "false"}')
    rendered = "{" + ",".join(parts) + "}"
    # Only text with an escape can hold the NUL one: the backslash test is one memchr, while the
    # six-character search costs several times as much on a kilobyte of account details.
    if "\\" in rendered and "\\u0000" in rendered:
        # jsonb rejects the NUL escape: drop NULs from every string, the slow but exact way.
        rendered = json.dumps(_strip_nul(json.loads(rendered)), ensure_ascii=False, separators=(",", ":"))
    return rendered


def _json_string(value: str) -> str:
    """``json.dumps(value, ensure_ascii=False)``; an id of letters and digits needs no escaping."""
    # isalnum() is False for '"', '\\' and every control character, the only ones JSON escapes.
    return f'"{value}"' if value.isalnum() else json.dumps(value, ensure_ascii=False)


def jsonable(value: Any) -> Any:
    """A source value as JSON can hold it, for the record of why a row was rejected."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    try:
        # str() first: Decimal(0.1) would carry the float's binary expansion.
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _strip_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_strip_nul(k): _strip_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_nul(v) for v in value]
    return value
