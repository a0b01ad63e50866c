"""What the source says the app should show, computed independently of the sync's own code.

Deletion rules, written out here in plain Python rather than shared with the sync's SQL:
a table whose schema has ``_fivetran_active`` is in History Mode, where an id is present
only while one of its versions is active; in every table a present row flagged
``is_deleted`` or ``_fivetran_deleted`` is gone too.
"""

from __future__ import annotations

import datetime as dt
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
    """Live opportunities: (name, account name, owner email, stage, sorted linked call ids)."""
    accounts = {i: a["name"] for i, a in live_rows(data, "account").items()}
    emails = {i: u["email"] for i, u in live_rows(data, "user").items()}
    live = {i: o for i, o in live_rows(data, "opportunity").items() if o.get("name") and str(o["name"]).strip()}
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
    return {
        opp_id: (
            o["name"].strip(),
            accounts.get(o["account_id"]),
            emails.get(o["owner_id"]),
            o["stage_name"],
            tuple(sorted(calls.get(opp_id, []))),
        )
        for opp_id, o in live.items()
    }
