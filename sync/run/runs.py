"""Decide what one invocation does, from the message and the stored state. Pure.

Rules:
- ``tick``: continue the run in progress from its stored cursor (this is how a chain whose
  continuation was lost resumes), else start an incremental run.
- ``full_resync``: start a full run from the beginning, superseding any run in progress;
  a redelivery of a message already started (``resync_started``: its id is among those
  remembered for Pub/Sub's retention, or, replayed from the dead letters, a full resync started
  since it was first requested; see ``state.resync_started``) is dropped.
- ``continue``: only if its run id and page are exactly the ones the database expects;
  anything else is a duplicate or a late delivery from a superseded chain, and is dropped.
- A run past ``max_pages`` pages is stopped: a chain that long is a bug, not a backlog.
- Pending requests (``sync/postgres/requests.py``) shape the next *new* run only: a requested
  full resync turns a tick's new run into one, and a requested re-read starts the named
  streams from the beginning (no purge). A run in progress keeps its cursor.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sync.bigquery.cursor import Stream
from sync.bigquery.streams import StreamKind
from sync.core.messages import Message, MessageType
from sync.postgres.requests import Request
from sync.run.page_plan import PagePlan
from sync.run.state import SyncState

TRIGGER_TICK = "tick"
TRIGGER_FULL = "full_resync"


@dataclass(frozen=True)
class Drop:
    """Acknowledge the message without doing anything."""

    reason: str
    run_id: uuid.UUID | None = None


@dataclass(frozen=True)
class StopRun:
    """Abandon the run in progress (hop limit)."""

    reason: str
    run_id: uuid.UUID


def plan(
    message: Message,
    state: SyncState,
    *,
    lookback: dt.timedelta,
    max_pages: int,
    resync_started: bool = False,
    requests: Sequence[Request] = (),
) -> PagePlan | Drop | StopRun:
    """What to do for ``message`` given ``state``; ``resync_started`` says a full_resync's id was seen."""
    in_progress = state.run_id is not None and state.next_page is not None
    if message.type is MessageType.FULL_RESYNC:
        if resync_started and message.requested_at is not None:
            return Drop(f"a full resync started after this full_resync was requested at {message.requested_at.isoformat()}")
        if resync_started and message.message_id is not None:
            return Drop(f"full_resync message {message.message_id} was already started")
        return _new_run(state, TRIGGER_FULL, lookback, message.message_id, requests)
    if message.type is MessageType.TICK:
        if not in_progress:
            full = any(r.kind == "full_resync" for r in requests)
            return _new_run(state, TRIGGER_FULL if full else TRIGGER_TICK, lookback, None, requests)
        return _continue(state, max_pages)
    if not in_progress or message.run_id != state.run_id or message.page != state.next_page:
        expected = f"{state.run_id}/page {state.next_page}" if in_progress else "no run in progress"
        return Drop(f"stale continuation {message.run_id}/page {message.page}; expected {expected}", message.run_id)
    bound = state.opportunities.upper_bound
    if message.upper_bound != bound:
        return Drop(f"continuation bound {message.upper_bound} does not match the run's {bound}", message.run_id)
    return _continue(state, max_pages)


def _continue(state: SyncState, max_pages: int) -> PagePlan | StopRun:
    assert state.run_id is not None  # noqa: S101 - guarded by caller
    assert state.next_page is not None  # noqa: S101
    if state.next_page > max_pages:
        return StopRun(f"run exceeded SYNC_MAX_PAGES={max_pages} pages; stopping the chain", state.run_id)
    return PagePlan(
        run_id=state.run_id,
        trigger=state.trigger or TRIGGER_TICK,
        page=state.next_page,
        new_run=False,
        opportunities=state.opportunities,
        links=state.links,
        page_size_limit=state.page_size_limit,
    )


def _new_run(
    state: SyncState, trigger: str, lookback: dt.timedelta, message_id: str | None, requests: Sequence[Request]
) -> PagePlan:
    full = trigger == TRIGGER_FULL
    reread = {StreamKind(s) for r in requests if r.kind == "reread" for s in r.streams}
    # A stream read again from the beginning has no watermark, which also keeps the probe from
    # skipping it as unchanged (sync/bigquery/probe.py::decide).
    watermarks = {
        StreamKind.OPPORTUNITIES: None if StreamKind.OPPORTUNITIES in reread else state.watermark,
        StreamKind.CALL_LINKS: None if StreamKind.CALL_LINKS in reread else state.link_watermark,
    }
    return PagePlan(
        run_id=uuid.uuid4(),
        trigger=trigger,
        page=1,
        new_run=True,
        opportunities=Stream.begin(watermarks[StreamKind.OPPORTUNITIES], lookback, full=full),
        links=Stream.begin(watermarks[StreamKind.CALL_LINKS], lookback, full=full),
        superseded_run=state.run_id,
        resync_message_id=message_id,
        page_size_limit=state.page_size_limit,
        watermarks=watermarks,
        source_marks=state.source_marks,
        requests=tuple(r.id for r in requests),
    )
