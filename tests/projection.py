"""What the source says the app should show, computed independently of the sync's own code."""

from __future__ import annotations

from typing import Any

from standins.generator import FivetranData


def expected_projection(data: FivetranData) -> dict[str, tuple[Any, ...]]:
    """Live opportunities: (name, account name, owner email, stage, sorted linked call ids)."""
    accounts = {a["id"]: a["name"] for a in data.rows("account")}
    emails = {u["id"]: u["email"] for u in data.rows("user")}
    live = {o["id"]: o for o in data.rows("opportunity") if o.get("name") and str(o["name"]).strip() and not o.get("is_deleted")}
    link_rows: dict[tuple[str, str], list[bool]] = {}
    for link in data.rows("call_context_integration"):
        if link["object_type"].lower() == "opportunity":
            link_rows.setdefault((link["call_id"], link["object_id"]), []).append(bool(link.get("_fivetran_deleted")))
    calls: dict[str, list[str]] = {}
    for (call_id, opp_id), deleted_flags in link_rows.items():
        if not all(deleted_flags) and opp_id in live:
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
