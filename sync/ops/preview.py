"""A dry run: what the next page would insert, update, delete, skip and reject, writing nothing.

It plans a tick against the stored state without taking the lease, reads the page through the
pipeline's own read step, and stages it inside a transaction that is always rolled back.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sync.bigquery.source import Source
from sync.core.config import Settings
from sync.core.messages import Message
from sync.postgres import holds, requests
from sync.postgres.db import Connection
from sync.postgres.guard import Guard, page_deletes
from sync.postgres.transaction import rolled_back, transaction
from sync.postgres.writer import write_page
from sync.rows.transform import Issue, PageMapping, transform_links
from sync.run import shape_check
from sync.run.page_plan import PagePlan
from sync.run.plan import plan
from sync.run.reader import Reader, SourceReader
from sync.run.state import read_state


@dataclass
class Preview:
    run: str
    page: int | None
    rows_read: int = 0
    would_insert: int = 0
    would_update: int = 0
    would_delete: int = 0
    unchanged: int = 0
    # Deleted in the source and never in Postgres: read, and nothing to write.
    deleted_not_stored: int = 0
    would_skip: int = 0
    degraded: int = 0
    # Deletes of live rows the guard would hold (sync/postgres/guard.py), and the holds waiting now.
    would_hold: int = 0
    links_read: int = 0
    held_deletes: list[dict[str, Any]] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in vars(self).items() if k != "issues"}
        data["issues"] = [
            {"source_id": i.source_id, "kind": i.kind, "reason": i.reason, "values": dict(i.values)} for i in self.issues
        ]
        return data


def preview(
    settings: Settings,
    source: Source,
    conn: Connection,
    reader: Reader | None = None,
    step: Callable[[str], None] | None = None,
) -> Preview:
    """Read and stage the page a tick would process now, then roll everything back.

    ``step`` is told what is being done as the preview goes (the CLI shows it as progress).
    """
    step = step or (lambda _what: None)
    with transaction(conn):
        state = read_state(conn)
        pending = requests.pending(conn)
        held = holds.standing(conn)
    decision = plan(
        Message.tick(),
        state,
        lookback=dt.timedelta(seconds=settings.lookback_seconds),
        max_pages=settings.max_pages,
        requests=pending,
    )
    if not isinstance(decision, PagePlan):
        return Preview(run=f"nothing to do: {decision.reason}", page=None, held_deletes=held)
    shape_check.follow_record(conn, source)
    step("reading the next page from BigQuery")
    read = (reader or SourceReader(source, settings.page_size, settings.page_budget_mib)).read(
        decision, time.monotonic() + settings.time_budget_seconds
    )
    links = transform_links(read.link_rows)
    step(f"staging {len(read.opportunity_rows)} rows in Postgres (rolled back)")
    with rolled_back(conn):
        # What the pipeline would hold, weighed as it would weigh it; nothing is recorded.
        guarded = page_deletes(conn, Guard.of(settings), decision.run_id, read.opportunity_rows)
        written = write_page(conn, PageMapping(guarded.rows), links.links, [], str(decision.run_id))
    counts = written.counts
    issues = [*written.mapped.issues, *links.issues, *read.future, *written.refused]
    skipped = sum(1 for i in issues if i.kind == "skipped")
    label = "new incremental run" if decision.new_run else f"run {decision.run_id}"
    return Preview(
        run=label,
        page=decision.page,
        rows_read=len(read.opportunity_rows),
        would_insert=counts.inserted,
        would_update=counts.updated,
        would_delete=counts.deleted,
        unchanged=counts.unchanged,
        deleted_not_stored=counts.not_stored,
        would_skip=skipped,
        degraded=len(issues) - skipped,
        would_hold=len(guarded.held),
        links_read=len(links.links),
        held_deletes=held,
        issues=issues,
    )
