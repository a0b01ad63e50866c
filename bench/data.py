"""Joined source rows built in memory from the shared generator, without BigQuery.

The shape is what ``sync/bigquery/source_sql.py`` returns for one opportunity (one row per id, the
account, owner, stage history and Gong health score already joined), with the Python types
the BigQuery client hands back: NUMERIC as Decimal, DATE as date, TIMESTAMP as aware datetime.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from standins.generator import FivetranData, generate


def _ts(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _date(text: str | None) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def joined_rows(data: FivetranData) -> list[dict[str, Any]]:
    """One joined row per opportunity, as ``BigQuerySource.read`` yields them for the opportunity stream."""
    accounts = {a["id"]: a for a in data.rows("account")}
    users = {u["id"]: u for u in data.rows("user")}
    gong = {g["id"]: g for g in data.rows("gong_opportunity")}
    history: dict[str, list[dict[str, Any]]] = {}
    for h in data.rows("opportunity_history"):
        history.setdefault(h["opportunity_id"], []).append({"stage": h["stage_name"], "changed_at": _ts(h["created_date"])})
    rows = []
    for o in data.rows("opportunity"):
        account = accounts.get(o["account_id"])
        user = users.get(o["owner_id"])
        g = gong.get(o["id"])
        stamps = [_ts(o["_fivetran_synced"])]
        if account:
            stamps.append(_ts(account["_fivetran_synced"]))
        if user:
            stamps.append(_ts(user["_fivetran_synced"]))
        rows.append(
            {
                "id": o["id"],
                "name": o["name"],
                "account_id": o["account_id"],
                "owner_id": o["owner_id"],
                "stage_name": o["stage_name"],
                "amount": None if o["amount"] is None else Decimal(o["amount"]),
                "close_date": _date(o["close_date"]),
                "is_deleted": o["is_deleted"],
                "last_modified": _ts(o["last_modified_date"]),
                "account_name": account["name"] if account else None,
                # BigQuery renders the account as JSON text without Fivetran's bookkeeping columns.
                "account_details": json.dumps(
                    {k: v for k, v in account.items() if not k.startswith("_fivetran")}, separators=(",", ":"), ensure_ascii=False
                )
                if account
                else None,
                "account_found": account is not None,
                "owner_email": user["email"] if user else None,
                "owner_found": user is not None,
                "owner_active": user["is_active"] if user else None,
                "stage_history": json.dumps(sorted(history.get(o["id"], []), key=lambda h: h["changed_at"]), default=str)
                if o["id"] in history
                else None,
                "health_score": g["health_score"] if g else None,
                "change_stamp": max(s for s in stamps if s is not None),
            }
        )
    return rows


def make_rows(n: int, *, messy: bool = False, metadata_bytes: int = 500, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` joined rows with ~``metadata_bytes`` of account text each (~500 B, as in bench/README.md)."""
    return joined_rows(generate(n, seed=seed, messy=messy, metadata_bytes=metadata_bytes))
