"""One invocation: lease, plan, read one page, write it with the cursor, publish what is next.

Steps and what a crash after each one leaves behind:

1. lease     - nothing changed; the lease expires after ``SYNC_LEASE_SECONDS``.
   attempt   - the attempt at the page is recorded (committed) before the read, so that a page
               whose invocations keep dying is read smaller (``sync/run/pacing.py``).
2. read      - nothing changed.
3. write     - rolled back with the transaction.
4. commit    - rows, links, cursor and counts are durable together; lease released.
5. publish   - if lost, the next tick continues the run from the stored cursor. At a run's end
               the publish is the follow-up tick for ``sync_end`` events that arrived during the
               run (``sync/run/wakeups.py``); if lost, the next scheduled tick begins the run.

A redelivered message after step 4 is stale (its page is no longer the expected one) and is
dropped, so at-least-once delivery cannot double-apply or fork the chain.

This module only orchestrates: SQL lives with the table it touches (``sync/run/state.py`` for
``sync_status``, ``sync/run/sync_runs.py`` for ``sync_runs``, ``sync/postgres/writer.py`` for the synced rows), and
each unit of work is one ``transaction`` opened here.

One :class:`~sync.core.deadline.Deadline` per invocation bounds every step: the read stops early, the
isolation of refused rows stops, and each transaction tells Postgres what is left of it
(``statement_timeout``, ``lock_timeout``). The ``sync_status`` row lock is waited for only briefly:
a session a killed invocation left behind makes the next one answer "busy", never hang.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from sync.bigquery.cursor import next_watermark
from sync.bigquery.source import Source
from sync.bigquery.streams import StreamKind
from sync.core.config import Settings
from sync.core.deadline import LEASE_LOCK_WAIT_SECONDS, Deadline
from sync.core.errors import LeaseBusyError, classify
from sync.core.messages import Message, MessageType
from sync.postgres import holds, purge, refused, requests
from sync.postgres.db import Connection, close_quietly
from sync.postgres.guard import Guard
from sync.postgres.transaction import transaction
from sync.postgres.writer import PageWrite, WriteCounts, refuse_page, write_page
from sync.rows.transform import Issue, LinkResult, PageMapping, transform_links
from sync.run import pacing, shape_check, sync_runs, wakeups
from sync.run import state as st
from sync.run.failures import after_failure
from sync.run.page_plan import PagePlan
from sync.run.plan import TRIGGER_FULL, Drop, StopRun, plan
from sync.run.reader import PageRead, Reader, SourceReader

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
    # Deletes the guard held back (sync/postgres/guard.py).
    held: int = 0


@dataclass(frozen=True)
class _Page:
    """One page between the read and the write: what was read, its links, and its rows to map."""

    plan: PagePlan
    read: PageRead
    mapping: PageMapping  # mapped by the write, as it pulls the rows (sync/postgres/writer.py)
    links: LinkResult
    # Deletes held back: the page's rows left out of ``mapping``, and a held purge.
    held: int = 0


@dataclass(frozen=True)
class _Committed:
    """A committed page: as written, what the write did, and its tally (recorded and logged alike)."""

    page: _Page
    written: PageWrite
    tally: sync_runs.PageTally


class Pipeline:
    """Runs one page per call to :meth:`handle`.

    Args:
        settings: validated configuration.
        source: where rows come from (BigQuery or the emulator behind the same client).
        connect: gives the invocation its Postgres connection (a new one, or the one kept by ``release``).
        publisher: sends continuations; None when the caller drains pages itself.
        checkpoint: called after each step; tests use it to inject crashes.
        reader: the read step; by default one keyset query per stream on ``source``.
        release: called with each invocation's connection and whether the invocation failed;
            by default the connection is closed (``sync/postgres/idle.py`` keeps it instead).
    """

    def __init__(
        self,
        settings: Settings,
        source: Source,
        connect: Callable[[], Connection],
        publisher: Publisher | None = None,
        checkpoint: Callable[[Checkpoint], None] | None = None,
        reader: Reader | None = None,
        release: Callable[[Connection, bool], None] | None = None,
    ) -> None:
        self._settings = settings
        self._connect = connect
        self._release = release or (lambda conn, _failed: close_quietly(conn))
        self._publisher = publisher
        self._checkpoint = checkpoint or (lambda _step: None)
        self._source = source
        self._reader = reader or SourceReader(source, settings.page_size, settings.page_budget_mib)

    def handle(self, message: Message, *, started: float | None = None) -> Outcome:
        """Process one message. Raises :class:`SyncError` (retryable or permanent) on failure.

        Args:
            message: the decoded Pub/Sub message.
            started: ``time.monotonic()`` when the platform handed the invocation over; its
                deadline counts from there (default: now).
        """
        invocation = uuid.uuid4()
        deadline = Deadline.starting(self._settings.time_budget_seconds, started=started)
        conn = self._connect()
        page_plan: PagePlan | None = None
        failed = False
        try:
            with transaction(conn, within=deadline.left(), lock_wait=LEASE_LOCK_WAIT_SECONDS):
                state = st.acquire_lease(conn, invocation, self._settings.lease_seconds)
                full = message.type is MessageType.FULL_RESYNC and state is not None
                resync_started = full and st.resync_started(conn, message.message_id, message.requested_at)
                pending = requests.pending(conn) if state is not None else []
            if state is None:
                return _busy(message)
            self._checkpoint("leased")
            decision = _decide(conn, self._source, self._settings, message, state, resync_started, pending, deadline)
            if isinstance(decision, Drop):
                return _drop(conn, invocation, decision, deadline)
            if isinstance(decision, StopRun):
                return _stop(conn, invocation, decision, deadline)
            attempt = _begin_attempt(conn, invocation, decision, state, deadline, self._settings.page_size)
            page_plan = dataclasses.replace(decision, page_size_limit=attempt.limit)
            return self._page(conn, invocation, page_plan, state, deadline, attempt)
        except BaseException as err:
            failed = True
            failure = classify(err) if isinstance(err, Exception) else None
            after_failure(conn, self._connect, invocation, failure, page_plan, deadline, self._settings.page_size)
            if failure is None or failure is err:
                raise
            raise failure from err
        finally:
            self._release(conn, failed)

    def _page(
        self,
        conn: Connection,
        invocation: uuid.UUID,
        p: PagePlan,
        state: st.SyncState,
        deadline: Deadline,
        attempt: pacing.Attempt,
    ) -> Outcome:
        read = self._reader.read(p, deadline.read_ends)
        self._checkpoint("read")
        page = _Page(p, read, PageMapping(read.opportunity_rows), transform_links(read.link_rows))
        committed = self._write(conn, invocation, page, state, deadline, attempt)
        self._checkpoint("committed")
        return self._finish(conn, committed, deadline)

    def _write(
        self,
        conn: Connection,
        invocation: uuid.UUID,
        page: _Page,
        state: st.SyncState,
        deadline: Deadline,
        attempt: pacing.Attempt,
    ) -> _Committed:
        """The write step: rows, links, rejections, purge ids, run counts and cursor in one transaction."""
        p, read, s = page.plan, page.read, self._settings
        full = p.trigger == TRIGGER_FULL
        # A full resync's id list stays complete until one page cannot record every id.
        complete_so_far = full and (p.new_run or state.ids_complete)
        ids_complete = complete_so_far and read.ids_incomplete is None
        if complete_so_far and read.ids_incomplete is not None:
            purge.note_incomplete(p.run_id, read.ids_incomplete)
        others = [*page.links.issues, *read.future]
        # Isolating refused rows shares the invocation's one deadline: a page that needs longer is
        # retried smaller (sync/run/pacing.py) rather than overrun the function.
        with transaction(conn, within=deadline.left(), lock_wait=LEASE_LOCK_WAIT_SECONDS):
            st.fence(conn, invocation)
            if p.new_run:  # first, so that the delete guard sees the approvals a request carries
                requests.take(conn, p.requests, p.run_id)
            page = _guarded(conn, Guard.of(s), page)
            written = _rows_and_links(conn, page, others, attempt, deadline.work_ends)
            c = written.counts
            if full:
                purge.record_page(conn, p.run_id, read.opportunity_rows, first=p.new_run)
                if read.run_done:
                    page = _count_purge(page, c, purge.finish(conn, p.run_id, complete=ids_complete, guard=Guard.of(s)))
            self._checkpoint("written")
            tally = _tally(page, written)
            sync_runs.record_page(conn, p, tally, run_done=read.run_done, shrunk_to=pacing.shrunk(s.page_size, p.page_size_limit))
            st.record_page(conn, _progress(page, state, c, tally, s.page_size, ids_complete=ids_complete))
            if read.run_done:
                sync_runs.expire_rejections(conn, s.rejection_retention_days)
                refused.expire(conn, s.rejection_retention_days)
        return _Committed(page, written, tally)

    def _finish(self, conn: Connection, committed: _Committed, deadline: Deadline) -> Outcome:
        """The finish step, after the commit: log the page, then end the run or continue it."""
        page, written, tally = committed.page, committed.written, committed.tally
        p, read = page.plan, page.read
        sync_runs.log_page(p, tally, read.opportunities.cursor, _issues(page, written), run_done=read.run_done)
        if read.future_starts:
            sync_runs.log_future_stamped(p, read.future, read.future_total)
        outcome = _page_outcome(page, tally, written)
        if read.run_done:
            with transaction(conn, within=deadline.left_after_work()):
                totals = sync_runs.run_totals(conn, p.run_id)
            sync_runs.log_run_finished(p.run_id, totals)
            if self._publisher is not None:
                _follow_up(conn, self._publisher, p, deadline)
            return outcome
        outcome.continuation = Message.continuation(p.run_id, p.page + 1, read.opportunities.upper_bound)
        if self._publisher is not None:
            _publish(self._publisher, outcome.continuation)
        self._checkpoint("published")
        return outcome


def _decide(
    conn: Connection,
    source: Source,
    s: Settings,
    message: Message,
    state: st.SyncState,
    resync_started: bool,
    pending: list[requests.Request],
    deadline: Deadline,
) -> PagePlan | Drop | StopRun:
    """The plan for ``message``, once the source is known to have what the replica was built from."""
    lookback = dt.timedelta(seconds=s.lookback_seconds)
    decision = plan(message, state, lookback=lookback, max_pages=s.max_pages, resync_started=resync_started, requests=pending)
    if isinstance(decision, PagePlan):
        added = shape_check.check(conn, source, s, decision, deadline)
        if added:  # a feature appeared: the new run re-reads what it changes
            decision = plan(message, state, lookback=lookback, max_pages=s.max_pages, requests=added)
    return decision


def _rows_and_links(conn: Connection, page: _Page, others: list[Issue], attempt: pacing.Attempt, ends: float) -> PageWrite:
    """The page's rows and links written, or, when its attempts weigh enough (``sync/run/pacing.py``), its row refused."""
    p, links = page.plan, page.links.links
    if attempt.refuse:
        return refuse_page(conn, page.mapping, links, others, str(p.run_id), attempt.number - 1, deadline=ends)
    return write_page(conn, page.mapping, links, others, str(p.run_id), deadline=ends)


def _guarded(conn: Connection, guard: Guard, page: _Page) -> _Page:
    """The page as written: without the deletes the guard holds (recorded and logged by ``holds.guard_page``)."""
    guarded = holds.guard_page(conn, guard, page.plan.run_id, page.read.opportunity_rows)
    if not guarded.held:
        return page
    return dataclasses.replace(page, mapping=PageMapping(guarded.rows), held=len(guarded.held))


def _page_outcome(page: _Page, tally: sync_runs.PageTally, written: PageWrite) -> Outcome:
    """What a committed page did, as the caller (and the function's log) sees it."""
    p, read = page.plan, page.read
    return Outcome(
        "page",
        run_id=p.run_id,
        page=p.page,
        run_done=read.run_done,
        rows_read=len(read.opportunity_rows),
        skipped=tally.rows_skipped,
        degraded=tally.rows_degraded,
        counts=written.counts,
        held=page.held,
    )


def _begin_attempt(
    conn: Connection, invocation: uuid.UUID, p: PagePlan, state: st.SyncState, deadline: Deadline, page_size: int
) -> pacing.Attempt:
    """Record the attempt at the page before reading it, in its own committed transaction.

    If this invocation is killed, the record stays, and counts as a death on the page; this is
    also where failed attempts that weigh enough shrink the page (``sync/run/pacing.py``).
    """
    attempt = pacing.next_attempt(page_size, p.page_size_limit, state.page_attempts, state.page_attempt_size)
    size = pacing.page_size(page_size, attempt.limit)
    with transaction(conn, within=deadline.left(), lock_wait=LEASE_LOCK_WAIT_SECONDS):
        st.record_attempt(conn, invocation, attempt.number, size, attempt.limit)
        if p.new_run:
            wakeups.run_began(conn)
    if state.page_attempts and (attempt.number == 1 or attempt.refuse):
        sync_runs.log_page_shrunk(p, state.page_attempts, state.page_attempt_size, size, refuse=attempt.refuse)
    return attempt


def _progress(
    page: _Page, state: st.SyncState, counts: WriteCounts, tally: sync_runs.PageTally, page_size: int, *, ids_complete: bool
) -> st.PageProgress:
    """Where the run stands once this page commits (pure): cursors, watermarks, pacing, marks."""
    p, read = page.plan, page.read
    repaired = read.start.repair
    return st.PageProgress(
        plan=p,
        opportunities=read.opportunities,
        links=read.links,
        watermark=next_watermark(
            None if StreamKind.OPPORTUNITIES in repaired else state.watermark, read.opportunities.read_up_to
        ),
        link_watermark=next_watermark(None if StreamKind.CALL_LINKS in repaired else state.link_watermark, read.links.read_up_to),
        written=counts.inserted + counts.updated + counts.deleted,
        skipped=tally.rows_skipped,
        page_size_limit=pacing.after_commit(page_size, p.page_size_limit),
        run_marks=(read.probe.marks if read.probe else None) if p.new_run else state.run_source_marks,
        ids_complete=ids_complete,
        repaired=repaired,
        run_done=read.run_done,
    )


def _drop(conn: Connection, invocation: uuid.UUID, decision: Drop, deadline: Deadline) -> Outcome:
    with transaction(conn, within=deadline.left_after_work(), lock_wait=LEASE_LOCK_WAIT_SECONDS):
        st.release_lease(conn, invocation)
    log.warning("message dropped: %s", decision.reason, extra={"event": "message_dropped", "run_id": _s(decision.run_id)})
    return Outcome("dropped", decision.reason, decision.run_id)


def _stop(conn: Connection, invocation: uuid.UUID, decision: StopRun, deadline: Deadline) -> Outcome:
    with transaction(conn, within=deadline.left_after_work(), lock_wait=LEASE_LOCK_WAIT_SECONDS):
        st.fence(conn, invocation)
        st.mark_failed(conn, invocation, decision.reason, abandon_run=True)
        sync_runs.fail_run(conn, decision.run_id, decision.reason)
    sync_runs.log_run_failed(decision.run_id, decision.reason, stopped=True)
    return Outcome("stopped", decision.reason, decision.run_id)


def _busy(message: Message) -> Outcome:
    if message.type is MessageType.TICK:
        log.info("a sync run is in flight; this tick has nothing to do", extra={"event": "run_busy"})
        return Outcome("busy", "lease held by another invocation")
    msg = f"another invocation holds the sync lease; {message.type.value} will be redelivered"
    raise LeaseBusyError(msg)


def _publish(publisher: Publisher, message: Message) -> None:
    try:
        publisher.publish(message)
    except Exception as err:  # noqa: BLE001 - any publish failure is handled the same way
        # The page is committed; raising would only get this message redelivered, and it
        # is stale now. The next tick resumes the run from the stored cursor instead.
        log.error(  # noqa: TRY400 - the traceback adds nothing to the classified reason
            "continuation publish failed; the next tick resumes from the stored cursor: %s",
            classify(err),
            extra={"event": "publish_failed", "run_id": _s(message.run_id), "page": message.page},
        )


def _follow_up(conn: Connection, publisher: Publisher, p: PagePlan, deadline: Deadline) -> None:
    """After a run's last commit: a tick for the ``sync_end`` events that arrived during the run."""
    try:
        # The webhook holds the row while it publishes (at most WAKE_PUBLISH_TIMEOUT_SECONDS).
        with transaction(conn, within=deadline.left_after_work(), lock_wait=wakeups.LOCK_WAIT_SECONDS):
            published = wakeups.follow_up(conn, lambda: publisher.publish(Message.tick()))
    except Exception as err:  # noqa: BLE001 - the run is committed; only the follow-up is lost
        log.error(  # noqa: TRY400 - the traceback adds nothing to the classified reason
            "follow-up tick failed; the next scheduled tick begins the run instead: %s",
            classify(err),
            extra={"event": "follow_up_failed", "run_id": str(p.run_id)},
        )
        return
    if published:
        log.info(
            "a Fivetran sync ended during the run; follow-up tick published",
            extra={"event": "follow_up_published", "run_id": str(p.run_id)},
        )


def _tally(page: _Page, written: PageWrite) -> sync_runs.PageTally:
    """Rows and links skipped or degraded by the transform, those Postgres refused, and future stamps."""
    read = page.read
    issues = _issues(page, written)
    skipped = sum(1 for i in issues if i.kind == "skipped")
    future = len(read.future)
    degraded = len(issues) - skipped + future
    return sync_runs.PageTally(len(read.opportunity_rows), skipped, degraded, written.counts, future, read.cost, page.held)


def _issues(page: _Page, written: PageWrite) -> list[Issue]:
    """Every row and link of the page skipped or degraded, by the transform or by Postgres."""
    return [*written.mapped.issues, *page.links.issues, *written.refused]


def _count_purge(page: _Page, counts: WriteCounts, purged: purge.Purged | None) -> _Page:
    """Add the purge to the page's counts; a purge the delete guard held adds to the page's held deletes."""
    if purged is None:
        return page
    counts.purged = purged.rows
    counts.deleted += purged.rows
    counts.links_removed += purged.links
    return dataclasses.replace(page, held=page.held + purged.held)


def _s(value: uuid.UUID | None) -> str | None:
    return str(value) if value is not None else None
