"""What a run leaves for operators: its ``sync_runs`` row and its JSON log lines.

Every page adds its :class:`PageTally` to the run's row in the page's own transaction, so the
counts are exactly what was committed. The column names and the log fields are the same words
on purpose: an alert on ``jsonPayload.rows_skipped`` and a query on ``sync_runs.rows_skipped``
mean one thing. Functions that write run inside the caller's transaction
(``sync/postgres/transaction.py``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sync.bigquery.results import Cost
from sync.core.errors import SourceShapeError
from sync.postgres.db import Connection
from sync.postgres.schema import ENTITY
from sync.postgres.writer import WriteCounts
from sync.rows import storable

if TYPE_CHECKING:
    from sync.bigquery.cursor import Keyset
    from sync.rows.transform import Issue
    from sync.run.page_plan import PagePlan

log = logging.getLogger(__name__)

# How many source ids a degraded-rows line names; every one of them is in sync_rejections.
_SAMPLE_IDS = 10


@dataclass(frozen=True)
class PageTally:
    """What one page did: rows read, skipped and degraded, what the write changed, what BigQuery billed."""

    rows_read: int
    rows_skipped: int
    rows_degraded: int
    written: WriteCounts
    rows_future_stamped: int = 0
    cost: Cost = field(default_factory=Cost)
    # Deletes the guard held back (sync/postgres/guard.py): rows read and not written, and a held purge.
    rows_held: int = 0

    def counters(self) -> dict[str, int]:
        """Each count under its ``sync_runs`` column name, which is also its log field."""
        w = self.written
        return {
            "rows_future_stamped": self.rows_future_stamped,
            "rows_read": self.rows_read,
            "rows_inserted": w.inserted,
            "rows_updated": w.updated,
            "rows_unchanged": w.unchanged,
            "rows_skipped": self.rows_skipped,
            "rows_degraded": self.rows_degraded,
            "rows_deleted": w.deleted,
            "links_added": w.links_added,
            "links_removed": w.links_removed,
            "rows_deleted_not_stored": w.not_stored,
            "rows_held": self.rows_held,
        }


_COUNTERS = tuple(PageTally(0, 0, 0, WriteCounts()).counters())
# BigQuery's cost: NULL where unknown (a run recorded before it was counted, or bytes BigQuery
# did not report), and a sum with an unknown stays unknown, as SQL's + has it.
_COST = ("bigquery_jobs", "bigquery_bytes_processed", "bigquery_bytes_billed")
_RECORD_PAGE = (
    f"INSERT INTO sync_runs AS r (run_id, trigger, pages, {', '.join((*_COUNTERS, *_COST))}, smallest_page_size,"
    " status, finished_at)"
    f" VALUES (%s, %s, 1, {', '.join(['%s'] * (len(_COUNTERS) + len(_COST)))}, %s, %s, CASE WHEN %s THEN now() END)"
    " ON CONFLICT (run_id) DO UPDATE SET pages = r.pages + 1, "
    + ", ".join(f"{c} = r.{c} + EXCLUDED.{c}" for c in (*_COUNTERS, *_COST))
    # least() skips NULLs: a page at the full size leaves the smallest one recorded.
    + ", smallest_page_size = least(r.smallest_page_size, EXCLUDED.smallest_page_size)"
    + ", status = EXCLUDED.status, finished_at = EXCLUDED.finished_at, error = NULL"
)
# A run that failed permanently can still be resumed, stopped or superseded; a finished one is final.
_OPEN = "status IN ('running', 'failed')"


def record_page(conn: Connection, plan: PagePlan, tally: PageTally, *, run_done: bool, shrunk_to: int | None = None) -> None:
    """Add a page to its run's row (creating it on the first page).

    ``shrunk_to`` is the page size used when it was below ``SYNC_PAGE_SIZE`` (``sync/run/pacing.py``).
    """
    cur = conn.cursor()
    if plan.superseded_run is not None:
        cur.execute(
            f"UPDATE sync_runs SET status = 'superseded', finished_at = now() WHERE run_id = %s AND {_OPEN}",
            (str(plan.superseded_run),),
        )
    counts = tally.counters()
    cost = (tally.cost.jobs, tally.cost.bytes_processed, tally.cost.bytes_billed)
    status = "success" if run_done else "running"
    cur.execute(
        _RECORD_PAGE, (str(plan.run_id), plan.trigger, *(counts[c] for c in _COUNTERS), *cost, shrunk_to, status, run_done)
    )


def fail_run(conn: Connection, run_id: uuid.UUID, error: str) -> None:
    """Mark a run failed with the reason (sync_status is ``sync.run.state.mark_failed``'s)."""
    cur = conn.cursor()
    cur.execute(
        f"UPDATE sync_runs SET error = %s, status = 'failed', finished_at = now() WHERE run_id = %s AND {_OPEN}",
        (storable.text(error)[:2000], str(run_id)),
    )


def expire_rejections(conn: Connection, days: int) -> None:
    """Forget rejected-row records older than the retention period."""
    cur = conn.cursor()
    cur.execute("DELETE FROM sync_rejections WHERE rejected_at < now() - make_interval(days => %s)", (days,))


def run_totals(conn: Connection, run_id: uuid.UUID) -> dict[str, Any] | None:
    """The run's trigger, pages, counts and duration in seconds; None if it has no row."""
    cur = conn.cursor()
    cur.execute(
        f"SELECT trigger, pages, {', '.join((*_COUNTERS, *_COST))},"
        " extract(epoch FROM finished_at - started_at),"
        # Lag: how far the synced data trails the source's newest change the run committed.
        " extract(epoch FROM finished_at - (SELECT last_sync_timestamp FROM sync_status WHERE entity_type = %s))"
        " FROM sync_runs WHERE run_id = %s",
        (ENTITY, str(run_id)),
    )
    row = cur.fetchone()
    if row is None:
        return None
    totals: dict[str, Any] = dict(zip(("trigger", "pages", *_COUNTERS, *_COST), row[:-2], strict=True))
    totals["seconds"] = float(row[-2]) if row[-2] is not None else None
    totals["lag_seconds"] = float(row[-1]) if row[-1] is not None else None
    return totals


def log_page(plan: PagePlan, tally: PageTally, cursor: Keyset, issues: list[Issue], *, run_done: bool) -> None:
    """A line per skipped row (ERROR), one per degraded reason (WARNING), one for the page."""
    run_id = str(plan.run_id)
    degraded: dict[str, list[str | None]] = {}
    for issue in issues:
        if issue.kind == "skipped":
            log.error(
                "row skipped: %s (id %s)",
                issue.reason,
                issue.source_id,
                extra={"event": "row_skipped", "run_id": run_id, "source_id": issue.source_id, "reason": issue.reason},
            )
        else:
            degraded.setdefault(issue.reason, []).append(issue.source_id)
    for reason, ids in degraded.items():
        # One line per reason per page: a connector that lost every owner must not emit
        # 100k log lines; every row is in sync_rejections.
        log.warning(
            "%d rows degraded: %s",
            len(ids),
            reason,
            extra={
                "event": "rows_degraded",
                "run_id": run_id,
                "reason": reason,
                "count": len(ids),
                "sample_ids": ids[:_SAMPLE_IDS],
            },
        )
    log.info(
        "page %d committed",
        plan.page,
        extra={
            "event": "page_committed",
            "run_id": run_id,
            "trigger": plan.trigger,
            "page": plan.page,
            **tally.counters(),
            "cursor": {"stamp": cursor.stamp.isoformat(), "id": cursor.key},
            "run_done": run_done,
        },
    )


def log_future_stamped(plan: PagePlan, issues: Sequence[Issue], total: int) -> None:
    """The warning about rows stamped beyond the source's clock (each is in sync_rejections).

    Logged on the page that holds the first of them in a stream's result, with ``total``, how
    many the run reads: once per run, or once per stream when the two streams reach theirs on
    different pages. The samples are the page's own.
    """
    streams = sorted({"call_links" if "call_id" in i.values else "opportunities" for i in issues})
    log.warning(
        "%d rows are stamped beyond the source's clock: synced, but the watermark does not follow them;"
        " later runs read them again until real time passes their stamp",
        total,
        extra={
            "event": "future_stamped",
            "run_id": str(plan.run_id),
            "streams": streams,
            "count": total,
            "sample_ids": [i.source_id for i in issues[:_SAMPLE_IDS]],
            "sample_stamps": [i.values.get("change_stamp") or i.values.get("stamp") for i in issues[:_SAMPLE_IDS]],
        },
    )


def log_run_finished(run_id: uuid.UUID, totals: dict[str, Any] | None) -> None:
    """The line the run alerts and dashboards key on, for a run that succeeded."""
    log.info("sync run finished", extra={"event": "run_finished", "status": "success", "run_id": str(run_id), **(totals or {})})


def log_run_failed(run_id: uuid.UUID | None, error: str, *, stopped: bool = False) -> None:
    """The same line for a run that failed; the alert on failed runs keys on it."""
    log.error(
        "run stopped: %s" if stopped else "sync run failed: %s",
        error,
        extra={"event": "run_finished", "status": "failed", "run_id": str(run_id) if run_id else None, "error": error},
    )


def log_source_unavailable(run_id: uuid.UUID | None, failure: SourceShapeError) -> None:
    """A recorded source table or column is gone: retried each tick; the alert fires if it lasts."""
    log.error(
        "%s",
        failure,
        extra={"event": "source_unavailable", "run_id": str(run_id) if run_id else None, "missing": list(failure.missing)},
    )


def log_page_shrunk(plan: PagePlan, strikes: int, struck_at: int | None, page_size: int, *, refuse: bool) -> None:
    """Failed attempts at this page weigh enough: it is read smaller or refused (``sync/run/pacing.py``)."""
    log.warning(
        "failed attempts at page %s weigh %d at %s rows; %s",
        plan.page,
        strikes,
        struck_at,
        "its one row is refused" if refuse else f"it is read at {page_size} rows",
        extra={
            "event": "page_shrunk",
            "run_id": str(plan.run_id),
            "strikes": strikes,
            "struck_at_page_size": struck_at,
            "page_size": page_size,
            "refused": refuse,
        },
    )
