"""One invocation: lease, plan, read one page, write it with the cursor, publish what is next.

Steps and what a crash after each one leaves behind:

1. lease     - nothing changed; the lease expires after ``SYNC_LEASE_SECONDS``.
2. read      - nothing changed.
3. write     - rolled back with the transaction.
4. commit    - rows, links, cursor and counts are durable together; lease released.
5. publish   - if lost, the next tick continues the run from the stored cursor.

A redelivered message after step 4 is stale (its page is no longer the expected one) and is
dropped, so at-least-once delivery cannot double-apply or fork the chain.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sync import state as st
from sync.config import Settings
from sync.cursor import advance, next_watermark, page_is_last
from sync.db import Connection
from sync.errors import LeaseBusyError, PermanentError, SyncError, classify
from sync.messages import Message, MessageType
from sync.runs import TRIGGER_FULL, Drop, PagePlan, StopRun, plan
from sync.sink import WriteCounts, write_page
from sync.source import Source, SourcePage
from sync.transform import Issue, transform_links, transform_page

log = logging.getLogger(__name__)

Checkpoint = Literal["leased", "read", "written", "committed", "published"]


class Publisher(Protocol):
    """Sends the next message of a run."""

    def publish(self, message: Message) -> None: ...


@dataclass
class Outcome:
    """What one invocation did."""

    action: Literal["page", "busy", "dropped", "stopped"]
    reason: str = ""
    run_id: uuid.UUID | None = None
    page: int | None = None
    run_done: bool = False
    continuation: Message | None = None
    rows_read: int = 0
    skipped: int = 0
    degraded: int = 0
    counts: WriteCounts = field(default_factory=WriteCounts)


class Pipeline:
    """Runs one page per call to :meth:`handle`.

    Args:
        settings: validated configuration.
        source: where rows come from (BigQuery or the emulator behind the same client).
        connect: opens a new Postgres connection.
        publisher: sends continuations; None when the caller drains pages itself.
        checkpoint: called after each step; tests use it to inject crashes.
    """

    def __init__(
        self,
        settings: Settings,
        source: Source,
        connect: Callable[[], Connection],
        publisher: Publisher | None = None,
        checkpoint: Callable[[Checkpoint], None] | None = None,
    ) -> None:
        self._settings = settings
        self._source = source
        self._connect = connect
        self._publisher = publisher
        self._checkpoint = checkpoint or (lambda _step: None)

    def handle(self, message: Message) -> Outcome:
        """Process one message. Raises :class:`SyncError` (retryable or permanent) on failure."""
        invocation = uuid.uuid4()
        conn = self._connect()
        run_id: uuid.UUID | None = None
        try:
            state = st.acquire_lease(conn, invocation, self._settings.lease_seconds)
            if state is None:
                if message.type is MessageType.TICK:
                    log.info("a sync run is in flight; this tick has nothing to do", extra={"event": "run_busy"})
                    return Outcome("busy", "lease held by another invocation")
                msg = f"another invocation holds the sync lease; {message.type.value} will be redelivered"
                raise LeaseBusyError(msg)  # noqa: TRY301 - classified by the handler below like any failure
            self._checkpoint("leased")
            decision = plan(
                message,
                state,
                lookback=dt.timedelta(seconds=self._settings.lookback_seconds),
                max_pages=self._settings.max_pages,
            )
            if isinstance(decision, Drop):
                st.release_lease(conn, invocation)
                log.warning(
                    "message dropped: %s", decision.reason, extra={"event": "message_dropped", "run_id": _s(decision.run_id)}
                )
                return Outcome("dropped", decision.reason, decision.run_id)
            if isinstance(decision, StopRun):
                self._stop(conn, invocation, decision)
                return Outcome("stopped", decision.reason, decision.run_id)
            run_id = decision.run_id
            return self._page(conn, invocation, decision, state)
        except BaseException as err:
            failure = classify(err) if isinstance(err, Exception) else None
            self._after_failure(conn, invocation, failure, run_id)
            if failure is None or failure is err:
                raise
            raise failure from err
        finally:
            _close(conn)

    def _page(self, conn: Connection, invocation: uuid.UUID, p: PagePlan, state: st.SyncState) -> Outcome:
        s = self._settings
        deadline = time.monotonic() + s.time_budget_seconds
        opp_page = (
            SourcePage([], p.upper_bound)
            if p.opportunities_done
            else self._source.read_opportunities(p.cursor, p.upper_bound, s.page_size, deadline)
        )
        link_page = None if p.links_done else self._source.read_links(p.link_cursor, p.link_upper_bound, s.page_size, deadline)
        self._checkpoint("read")

        transformed = transform_page(opp_page.rows)
        links = transform_links(link_page.rows) if link_page else []
        opps_done = p.opportunities_done or page_is_last(len(opp_page.rows), s.page_size, truncated=opp_page.truncated)
        links_done = (
            p.links_done or link_page is None or page_is_last(len(link_page.rows), s.page_size, truncated=link_page.truncated)
        )
        run_done = opps_done and links_done
        cursor = advance(p.cursor, opp_page.last)
        link_cursor = advance(p.link_cursor, link_page.last if link_page else None)
        link_bound = link_page.upper_bound if link_page else p.link_upper_bound
        source_ids = self._source_ids() if run_done and p.trigger == TRIGGER_FULL else None

        st.fence(conn, invocation)
        counts = write_page(conn, transformed.rows, links, transformed.issues, str(p.run_id), source_ids)
        self._checkpoint("written")
        skipped = transformed.skipped
        degraded = len(transformed.issues) - skipped
        _record_run(conn, p, counts, len(opp_page.rows), skipped, degraded, run_done)
        st.record_page(
            conn,
            st.PageProgress(
                run_id=p.run_id,
                trigger=p.trigger,
                page=p.page,
                new_run=p.new_run,
                run_done=run_done,
                upper_bound=opp_page.upper_bound,
                cursor=cursor,
                opportunities_done=opps_done,
                link_upper_bound=link_bound,
                link_cursor=link_cursor,
                links_done=links_done,
                # A start keyset has an empty key; any other cursor sits on a row that was read.
                watermark=next_watermark(state.watermark, cursor.stamp if cursor.key else None),
                link_watermark=next_watermark(state.link_watermark, link_cursor.stamp if link_cursor.key else None),
                written=counts.inserted + counts.updated + counts.deleted,
                skipped=skipped,
                resync_message_id=p.resync_message_id,
            ),
        )
        if run_done:
            _expire_rejections(conn, s.rejection_retention_days)
        conn.commit()
        self._checkpoint("committed")

        outcome = Outcome(
            "page",
            run_id=p.run_id,
            page=p.page,
            run_done=run_done,
            rows_read=len(opp_page.rows),
            skipped=skipped,
            degraded=degraded,
            counts=counts,
        )
        _log_page(outcome, p, cursor, transformed.issues)
        if run_done:
            _log_run_finished(conn, p.run_id)
            return outcome
        outcome.continuation = Message.continuation(p.run_id, p.page + 1, opp_page.upper_bound)
        if self._publisher is not None:
            self._publish(outcome.continuation)
        self._checkpoint("published")
        return outcome

    def _source_ids(self) -> list[str] | None:
        ids = list(self._source.all_opportunity_ids())
        if not ids:
            # An empty source is far likelier a broken connector than a deleted CRM.
            log.error(
                "full resync found no opportunity ids in the source; not purging anything", extra={"event": "purge_skipped"}
            )
            return None
        return ids

    def _publish(self, message: Message) -> None:
        assert self._publisher is not None  # noqa: S101 - caller checks
        try:
            self._publisher.publish(message)
        except Exception as err:  # noqa: BLE001 - any publish failure is handled the same way
            # The page is committed; raising would only get this message redelivered, and it
            # is stale now. The next tick resumes the run from the stored cursor instead.
            log.error(  # noqa: TRY400 - the traceback adds nothing to the classified reason
                "continuation publish failed; the next tick resumes from the stored cursor: %s",
                classify(err),
                extra={"event": "publish_failed", "run_id": _s(message.run_id), "page": message.page},
            )

    def _stop(self, conn: Connection, invocation: uuid.UUID, decision: StopRun) -> None:
        cur = conn.cursor()
        st.fence(conn, invocation)
        cur.execute(
            "UPDATE sync_status SET status = 'failed', last_error = %s, run_id = NULL, run_next_page = NULL,"
            " lease_owner = NULL, lease_expires_at = NULL, updated_at = now() WHERE entity_type = %s",
            (decision.reason, st.ENTITY),
        )
        cur.execute(
            "UPDATE sync_runs SET status = 'failed', error = %s, finished_at = now() WHERE run_id = %s",
            (decision.reason, str(decision.run_id)),
        )
        conn.commit()
        log.error(
            "run stopped: %s",
            decision.reason,
            extra={"event": "run_finished", "status": "failed", "run_id": str(decision.run_id)},
        )

    def _after_failure(
        self, conn: Connection, invocation: uuid.UUID, failure: SyncError | None, run_id: uuid.UUID | None
    ) -> None:
        """Best effort: roll back, free the lease, and record a permanent failure."""
        for attempt in (conn, None):
            try:
                target = attempt if attempt is not None else self._connect()
                try:
                    target.rollback()
                    if isinstance(failure, PermanentError):
                        st.mark_failed(target, invocation, str(failure), run_id)
                        # The alert on failed runs keys on this line.
                        log.error(
                            "sync run failed: %s",
                            failure,
                            extra={"event": "run_finished", "status": "failed", "run_id": _s(run_id), "error": str(failure)},
                        )
                    else:
                        st.release_lease(target, invocation)
                finally:
                    if attempt is None:
                        _close(target)
            except Exception:  # noqa: BLE001, S112 - the lease expires on its own
                continue
            return


def _record_run(conn: Connection, p: PagePlan, counts: WriteCounts, read: int, skipped: int, degraded: int, done: bool) -> None:
    cur = conn.cursor()
    if p.superseded_run is not None:
        cur.execute(
            "UPDATE sync_runs SET status = 'superseded', finished_at = now()"
            " WHERE run_id = %s AND status IN ('running', 'failed')",
            (str(p.superseded_run),),
        )
    cur.execute(
        "INSERT INTO sync_runs AS r (run_id, trigger, pages, rows_read, rows_inserted, rows_updated, rows_unchanged,"
        " rows_skipped, rows_degraded, rows_deleted, links_added, links_removed, status, finished_at)"
        " VALUES (%s, %s, 1, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, CASE WHEN %s THEN now() END)"
        " ON CONFLICT (run_id) DO UPDATE SET pages = r.pages + 1, rows_read = r.rows_read + EXCLUDED.rows_read,"
        " rows_inserted = r.rows_inserted + EXCLUDED.rows_inserted, rows_updated = r.rows_updated + EXCLUDED.rows_updated,"
        " rows_unchanged = r.rows_unchanged + EXCLUDED.rows_unchanged, rows_skipped = r.rows_skipped + EXCLUDED.rows_skipped,"
        " rows_degraded = r.rows_degraded + EXCLUDED.rows_degraded, rows_deleted = r.rows_deleted + EXCLUDED.rows_deleted,"
        " links_added = r.links_added + EXCLUDED.links_added, links_removed = r.links_removed + EXCLUDED.links_removed,"
        " status = EXCLUDED.status, finished_at = EXCLUDED.finished_at, error = NULL",
        (
            str(p.run_id),
            p.trigger,
            read,
            counts.inserted,
            counts.updated,
            counts.unchanged,
            skipped,
            degraded,
            counts.deleted,
            counts.links_added,
            counts.links_removed,
            "success" if done else "running",
            done,
        ),
    )


def _expire_rejections(conn: Connection, days: int) -> None:
    cur = conn.cursor()
    cur.execute("DELETE FROM sync_rejections WHERE rejected_at < now() - make_interval(days => %s)", (days,))


def _log_page(outcome: Outcome, p: PagePlan, cursor: Any, issues: list[Issue]) -> None:
    c = outcome.counts
    for issue in issues:
        if issue.kind == "skipped":
            log.error(
                "row skipped: %s (id %s)",
                issue.reason,
                issue.source_id,
                extra={"event": "row_skipped", "run_id": str(p.run_id), "source_id": issue.source_id, "reason": issue.reason},
            )
    degraded: dict[str, list[str | None]] = {}
    for issue in issues:
        if issue.kind == "degraded":
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
                "run_id": str(p.run_id),
                "reason": reason,
                "count": len(ids),
                "sample_ids": ids[:10],
            },
        )
    log.info(
        "page %d committed",
        p.page,
        extra={
            "event": "page_committed",
            "run_id": str(p.run_id),
            "trigger": p.trigger,
            "page": p.page,
            "rows_read": outcome.rows_read,
            "rows_inserted": c.inserted,
            "rows_updated": c.updated,
            "rows_unchanged": c.unchanged,
            "rows_skipped": outcome.skipped,
            "rows_degraded": outcome.degraded,
            "rows_deleted": c.deleted,
            "links_added": c.links_added,
            "links_removed": c.links_removed,
            "cursor": {"stamp": cursor.stamp.isoformat(), "id": cursor.key},
            "run_done": outcome.run_done,
        },
    )


def _log_run_finished(conn: Connection, run_id: uuid.UUID) -> None:
    cur = conn.cursor()
    cur.execute(
        "SELECT trigger, pages, rows_read, rows_inserted, rows_updated, rows_unchanged, rows_skipped, rows_degraded,"
        " rows_deleted, links_added, links_removed, extract(epoch FROM finished_at - started_at)"
        " FROM sync_runs WHERE run_id = %s",
        (str(run_id),),
    )
    row = cur.fetchone()
    conn.rollback()
    if row is None:
        return
    names = (
        "trigger",
        "pages",
        "rows_read",
        "rows_inserted",
        "rows_updated",
        "rows_unchanged",
        "rows_skipped",
        "rows_degraded",
        "rows_deleted",
        "links_added",
        "links_removed",
    )
    fields: dict[str, Any] = {n: (int(v) if isinstance(v, int) else v) for n, v in zip(names, row, strict=False)}
    fields["seconds"] = float(row[-1]) if row[-1] is not None else None
    log.info("sync run finished", extra={"event": "run_finished", "status": "success", "run_id": str(run_id), **fields})


def _close(conn: Connection) -> None:
    # Closing a broken connection has nothing to report.
    with contextlib.suppress(Exception):
        conn.close()


def _s(value: uuid.UUID | None) -> str | None:
    return str(value) if value is not None else None
