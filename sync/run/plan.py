"""Decide what one invocation does, from the message and the stored state. Pure.

Rules:
- ``tick``: continue the run in progress from its stored cursor (this is how a chain whose
  continuation was lost resumes), else start an incremental run.
- ``full_resync``: start a full run from the beginning, superseding any run in progress;
  a redelivery of a message already started (``resync_started``: its id is among those
  remembered for Pub/Sub's retention, see ``state.resync_started``) is dropped.
- ``continue``: only if its run id and page are exactly the ones the database expects;
  anything else is a duplicate or a late delivery from a superseded chain, and is dropped.
- A run past ``max_pages`` pages is stopped: a chain that long is a bug, not a backlog.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sync.bigquery.cursor import Stream
from sync.bigquery.streams import StreamKind
from sync.core.messages import Message, MessageType
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
    message: Message, state: SyncState, *, lookback: dt.timedelta, max_pages: int, resync_started: bool = False
) -> PagePlan | Drop | StopRun:
    """What to do for ``message`` given ``state``; ``resync_started`` says a full_resync's id was seen."""
    in_progress = state.run_id is not None and state.next_page is not None
    if message.type is MessageType.FULL_RESYNC:
        if message.message_id is not None and resync_started:
            return Drop(f"full_resync message {message.message_id} was already started")
        return _new_run(state, TRIGGER_FULL, lookback, message.message_id)
    if message.type is MessageType.TICK:
        if not in_progress:
            return _new_run(state, TRIGGER_TICK, lookback, None)
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


def _new_run(state: SyncState, trigger: str, lookback: dt.timedelta, message_id: str | None) -> PagePlan:
    full = trigger == TRIGGER_FULL
    return PagePlan(
        run_id=uuid.uuid4(),
        trigger=trigger,
        page=1,
        new_run=True,
        opportunities=Stream.begin(state.watermark, lookback, full=full),
        links=Stream.begin(state.link_watermark, lookback, full=full),
        superseded_run=state.run_id,
        resync_message_id=message_id,
        page_size_limit=state.page_size_limit,
        watermarks={StreamKind.OPPORTUNITIES: state.watermark, StreamKind.CALL_LINKS: state.link_watermark},
        source_marks=state.source_marks,
    )
