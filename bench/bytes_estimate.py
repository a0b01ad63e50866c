"""Bytes billed per day, before and after one evaluation per run: arithmetic from stated sizes.

BigQuery bills a query for every column it references, over the whole table (Fivetran tables
are not partitioned), at least 10 MB per table referenced. Column sizes are BigQuery's
logical sizes: STRING 2 bytes + its UTF-8 length, INT64 / FLOAT64 / TIMESTAMP / DATE 8,
NUMERIC 16, BOOL 1. Salesforce ids are 18 characters. MB here is 10^6 bytes.

The org: 500k opportunities, 5M stage history rows, 1M Gong call-context rows (three CRM
fields per link, so 333k links), 100k accounts, 2k users, a Gong opportunity row per
opportunity; a tick every 5 minutes (288 a day); 1 % of opportunities change per day.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MB = 1_000_000
MIN_PER_TABLE = 10 * MB
TICKS_PER_DAY = 24 * 60 // 5
PAGE = 2000
SF_ID = 2 + 18
TS = 8


@dataclass(frozen=True)
class Table:
    name: str
    rows: int
    join_columns: dict[str, int]  # column -> bytes per row, as the join and link queries reference them

    @property
    def join_bytes(self) -> int:
        return self.rows * sum(self.join_columns.values())


TABLES = (
    Table(
        "opportunity",
        500_000,
        {
            "id": SF_ID,
            "name (40 chars)": 2 + 40,
            "account_id": SF_ID,
            "owner_id": SF_ID,
            "stage_name (12 chars)": 2 + 12,
            "amount NUMERIC": 16,
            "close_date DATE": 8,
            "is_deleted": 1,
            "last_modified_date": TS,
            "system_modstamp": TS,
            "_fivetran_synced": TS,
        },
    ),
    # The account's details land in metadata as JSON, so the join references every column:
    # about 60 populated columns, 600 bytes a row in all.
    Table("account", 100_000, {"every column (~60)": 600}),
    Table(
        "user",
        2_000,
        {
            "id": SF_ID,
            "email (25 chars)": 2 + 25,
            "is_active": 1,
            "last_modified_date": TS,
            "system_modstamp": TS,
            "_fivetran_synced": TS,
        },
    ),
    Table(
        "opportunity_history",
        5_000_000,
        {
            "id": SF_ID,
            "opportunity_id": SF_ID,
            "stage_name (12 chars)": 2 + 12,
            "created_date": TS,
            "is_deleted": 1,
            "system_modstamp": TS,
            "_fivetran_synced": TS,
        },
    ),
    Table("gong opportunity", 500_000, {"id": SF_ID, "health_score FLOAT64": 8, "_fivetran_synced": TS}),
    Table(
        "call_context_integration",
        1_000_000,
        {
            "call_id (20 chars)": 2 + 20,
            "object_type (11 chars)": 2 + 11,
            "object_id": SF_ID,
            "_fivetran_deleted": 1,
            "_fivetran_synced": TS,
        },
    ),
)
LINKS = 1_000_000 // 3


def billed(table_bytes: list[int]) -> int:
    """One query over these tables: each table at least the 10 MB minimum."""
    return sum(max(MIN_PER_TABLE, b) for b in table_bytes)


def estimate(fivetran_syncs_per_day: int = 24) -> dict[str, Any]:
    """Before and after, per query kind, per day, and per full resync."""
    opp_tables = [t for t in TABLES if t.name != "call_context_integration"]
    link_table = TABLES[-1]
    join = billed([t.join_bytes for t in opp_tables])
    links = billed([link_table.join_bytes])
    all_ids = billed([TABLES[0].rows * SF_ID])
    # The probe reads _fivetran_synced of every table and counts rows (free).
    probe = billed([t.rows * TS for t in TABLES])
    active = min(fivetran_syncs_per_day, TICKS_PER_DAY)
    changed_per_run = 500_000 * 0.01 / active
    # Before: every tick evaluated the join and the links once per page; a tick's run is one page.
    before_tick = join + links
    before_day = TICKS_PER_DAY * before_tick
    # After: every tick probes; only a tick after a Fivetran sync evaluates each stream once.
    after_active = probe + join + links
    after_day = active * after_active + (TICKS_PER_DAY - active) * probe
    opp_pages, link_pages = math.ceil(500_000 / PAGE), math.ceil(LINKS / PAGE)
    return {
        "per_table_join_bytes": {t.name: t.join_bytes for t in TABLES},
        "join_query": join,
        "link_query": links,
        "probe_query": probe,
        "all_ids_query": all_ids,
        "fivetran_syncs_per_day": active,
        "changed_opportunities_per_run": changed_per_run,
        "before": {"per_tick": before_tick, "per_day": before_day},
        "after": {"idle_tick": probe, "active_tick": after_active, "per_day": after_day},
        "full_resync": {
            "before": opp_pages * join + link_pages * links + all_ids,
            "after": probe + join + links,
            "pages": {"opportunities": opp_pages, "links": link_pages},
        },
    }


def _mb(value: float) -> str:
    return f"{value / MB:,.1f} MB"


def _gb(value: float) -> str:
    return f"{value / 1e9:,.1f} GB"


def render(e: dict[str, Any] | None = None) -> str:
    """The estimate as Markdown, every figure with the arithmetic behind it."""
    e = e or estimate()
    lines = ["| table | rows | bytes/row referenced | join/link query reads |", "|---|---:|---:|---:|"]
    for t in TABLES:
        per_row = sum(t.join_columns.values())
        lines.append(f"| {t.name} | {t.rows:,} | {per_row} | {_mb(t.join_bytes)} |")
    a, b = e["after"], e["before"]
    n = e["fivetran_syncs_per_day"]
    lines += [
        "",
        f"- join query: {_mb(e['join_query'])} (user's {_mb(TABLES[2].join_bytes)} billed as the 10 MB minimum);"
        f" link query: {_mb(e['link_query'])}; probe: every table's `_fivetran_synced` (8 B/row) ="
        f" {_mb(e['probe_query'])} (four tables at the 10 MB minimum, history 40 MB, links 10 MB)",
        f"- **before**: {TICKS_PER_DAY} ticks x (join + links) = {TICKS_PER_DAY} x {_mb(b['per_tick'])} ="
        f" **{_gb(b['per_day'])}/day**",
        f"- **after**, Fivetran syncing {n} times a day ({e['changed_opportunities_per_run']:.0f} changed opportunities each):"
        f" {n} x (probe + join + links) + {TICKS_PER_DAY - n} x probe = {n} x {_mb(a['active_tick'])}"
        f" + {TICKS_PER_DAY - n} x {_mb(a['idle_tick'])} = **{_gb(a['per_day'])}/day**",
        f"- the same with Fivetran syncing every 15 minutes: {_gb(estimate(96)['after']['per_day'])}/day; every 5 minutes"
        f" (every tick finds changes, so the probe is pure overhead): {_gb(estimate(288)['after']['per_day'])}/day",
        f"- full resync: before {e['full_resync']['pages']['opportunities']} x join + {e['full_resync']['pages']['links']}"
        f" x links + the id scan = {_gb(e['full_resync']['before'])}; after probe + join + links ="
        f" {_gb(e['full_resync']['after'])}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render())
