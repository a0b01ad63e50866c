"""A dry run: what the next page would insert, update, delete, skip and reject, writing nothing.

It plans a tick against the stored state without taking the lease, reads the page, stages
it in a temp table inside a transaction that is always rolled back.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

from sync.config import Settings
from sync.db import Connection
from sync.messages import Message
from sync.runs import PagePlan, plan
from sync.sink import write_page
from sync.source import Source
from sync.state import read_state
from sync.transform import Issue, transform_links, transform_page


@dataclass
class Preview:
    run: str
    page: int | None
    rows_read: int = 0
    would_insert: int = 0
    would_update: int = 0
    would_delete: int = 0
    unchanged: int = 0
    would_skip: int = 0
    degraded: int = 0
    links_read: int = 0
    issues: list[Issue] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in vars(self).items() if k != "issues"}
        data["issues"] = [
            {"source_id": i.source_id, "kind": i.kind, "reason": i.reason, "values": dict(i.values)} for i in self.issues
        ]
        return data


def preview(settings: Settings, source: Source, conn: Connection) -> Preview:
    """Read and stage the page a tick would process now, then roll everything back."""
    state = read_state(conn)
    decision = plan(Message.tick(), state, lookback=dt.timedelta(seconds=settings.lookback_seconds), max_pages=settings.max_pages)
    if not isinstance(decision, PagePlan):
        return Preview(run=f"nothing to do: {decision.reason}", page=None)
    deadline = time.monotonic() + settings.time_budget_seconds
    opp_rows = (
        []
        if decision.opportunities_done
        else source.read_opportunities(decision.cursor, decision.upper_bound, settings.page_size, deadline).rows
    )
    link_page = (
        None
        if decision.links_done
        else source.read_links(decision.link_cursor, decision.link_upper_bound, settings.page_size, deadline)
    )
    transformed = transform_page(opp_rows)
    links = transform_links(link_page.rows) if link_page else []
    try:
        counts = write_page(conn, transformed.rows, links, [], str(decision.run_id))
    finally:
        conn.rollback()
    label = "new incremental run" if decision.new_run else f"run {decision.run_id}"
    return Preview(
        run=label,
        page=decision.page,
        rows_read=len(opp_rows),
        would_insert=counts.inserted,
        would_update=counts.updated,
        would_delete=counts.deleted,
        unchanged=counts.unchanged,
        would_skip=transformed.skipped,
        degraded=len(transformed.issues) - transformed.skipped,
        links_read=len(links),
        issues=transformed.issues,
    )
