"""What the source says the app should show, computed independently of the sync's own code.

Deletion rules, written out here in plain Python rather than shared with the sync's SQL:
a table whose schema has ``_fivetran_active`` is in History Mode, where an id is present
only while one of its versions is active; in every table a present row flagged
``is_deleted`` or ``_fivetran_deleted`` is gone too.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from standins.generator import FivetranData


def _when(value: Any) -> dt.datetime:
    if value is None:
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _history_mode(data: FivetranData, table: str) -> bool:
    return "_fivetran_active" in data.schemas.get(table, {})


def _is_active(row: dict[str, Any]) -> bool:
    # Only an explicit false retires a version.
    return row.get("_fivetran_active") is not False


def live_rows(data: FivetranData, table: str) -> dict[str, dict[str, Any]]:
    """The row that stands for each id the source still holds, by id."""
    history = _history_mode(data, table)
    versions: dict[str, list[dict[str, Any]]] = {}
    for row in data.rows(table):
        if not history or _is_active(row):
            versions.setdefault(row["id"], []).append(row)
    live = {}
    for row_id, rows in versions.items():
        newest = max(rows, key=lambda r: (_when(r.get("_fivetran_start")), _when(r.get("_fivetran_synced"))))
        if not newest.get("is_deleted") and not newest.get("_fivetran_deleted"):
            live[row_id] = newest
    return live


def expected_projection(data: FivetranData) -> dict[str, tuple[Any, ...]]:
    """Live opportunities, every stored column: see :data:`COLUMNS` for the order."""
    accounts = live_rows(data, "account")
    users = live_rows(data, "user")
    scores = {i: g.get("health_score") for i, g in live_rows(data, "gong_opportunity").items()}
    live = {i: o for i, o in live_rows(data, "opportunity").items() if o.get("name") and str(o["name"]).strip()}
    stages = _stage_history(data)
    calls = _linked_calls(data, live)
    projection = {}
    for opp_id, o in live.items():
        account, owner = accounts.get(o.get("account_id")), users.get(o.get("owner_id"))
        metadata: dict[str, Any] = {"account_id": o.get("account_id"), "owner_id": o.get("owner_id")}
        if account is not None:
            metadata["account"] = (account["id"], account["name"])
        if owner is not None and owner.get("is_active") is not None:
            metadata["owner_active"] = owner["is_active"]
        if opp_id in stages:
            metadata["stage_history"] = stages[opp_id]
        projection[opp_id] = (
            o["name"].strip(),
            account["name"] if account else None,
            owner["email"] if owner else None,
            o["stage_name"],
            _cents(o.get("amount"), below=Decimal("1e16")),
            _date(o.get("close_date")),
            _score(scores[opp_id] if opp_id in scores else o.get("health_score")),
            _summary(metadata),
            tuple(sorted(calls.get(opp_id, []))),
        )
    return projection


# What each projected value is, in order; the stored side (tests/conftest.py) reads the same.
COLUMNS = ("name", "account_name", "owner_email", "stage", "amount", "close_date", "health_score", "metadata", "calls")


def stored_metadata(metadata: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The stored ``metadata`` in the shape :func:`expected_projection` gives it."""
    summary = {k: metadata[k] for k in ("account_id", "owner_id", "owner_active") if k in metadata}
    summary.setdefault("account_id", None)
    summary.setdefault("owner_id", None)
    if "account" in metadata:
        summary["account"] = (metadata["account"].get("id"), metadata["account"].get("name"))
    if "stage_history" in metadata:
        summary["stage_history"] = tuple(h["stage"] for h in metadata["stage_history"])
    return _summary(summary)


def _summary(metadata: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    # jsonb cannot hold NUL: the sync stores metadata strings without it (rows/parse.py).
    return tuple(sorted((k, _without_nul(v)) for k, v in metadata.items()))


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, tuple):
        return tuple(_without_nul(v) for v in value)
    return value


def _stage_history(data: FivetranData) -> dict[str, tuple[str, ...]]:
    """Each opportunity's live history rows' stages, oldest first (ties by row id)."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for row in live_rows(data, "opportunity_history").values():
        rows.setdefault(row["opportunity_id"], []).append(row)
    return {
        opp_id: tuple(r["stage_name"] for r in sorted(found, key=lambda r: (_when(r.get("created_date")), r["id"])))
        for opp_id, found in rows.items()
    }


def _linked_calls(data: FivetranData, live: dict[str, Any]) -> dict[str, list[str]]:
    links_history = _history_mode(data, "call_context_integration")
    link_rows: dict[tuple[str, str], list[bool]] = {}
    for link in data.rows("call_context_integration"):
        if link["object_type"].lower() == "opportunity":
            present = not link.get("_fivetran_deleted") and (not links_history or _is_active(link))
            link_rows.setdefault((link["call_id"], link["object_id"]), []).append(present)
    calls: dict[str, list[str]] = {}
    for (call_id, opp_id), present in link_rows.items():
        if any(present) and opp_id in live:
            calls.setdefault(opp_id, []).append(call_id)
    return calls


def _number(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _cents(value: Any, *, below: Decimal) -> Decimal | None:
    """Money to the cent, half away from zero; None when not a number or too big to store."""
    number = _number(value)
    if number is None:
        return None
    rounded = number.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return rounded if abs(rounded) < below else None


def _score(value: Any) -> Decimal | None:
    """A health score 0-100, checked before it is rounded to two places."""
    number = _number(value)
    if number is None or not 0 <= number <= 100:
        return None
    return number.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _date(value: Any) -> dt.date | None:
    """The calendar day of a date or timestamp (UTC); Salesforce's placeholder years are no date."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        day = value.astimezone(dt.UTC).date()
    elif isinstance(value, dt.date):
        day = value
    else:
        try:
            day = dt.date.fromisoformat(str(value).strip()[:10])
        except ValueError:
            return None
    return day if 1900 <= day.year <= 2999 else None
