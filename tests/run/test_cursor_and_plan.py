"""Cursor arithmetic and the per-message plan: pure, table-driven."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from sync.bigquery.cursor import EPOCH, Keyset, Stream, advance, next_watermark, page_is_last, run_start
from sync.bigquery.results import JobRef, ResultPosition
from sync.core.messages import Message
from sync.run.page_plan import PagePlan
from sync.run.runs import Drop, StopRun, plan
from sync.run.state import SyncState

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
RUN = uuid.UUID(int=7)
JOB = JobRef("local-project", "US", "job-1")
AT_20, AT_40 = ResultPosition(JOB, 20), ResultPosition(JOB, 40)


@pytest.mark.parametrize(
    ("watermark", "full", "expected"),
    [
        (None, False, Keyset(EPOCH, "")),  # first run: everything
        (T0, True, Keyset(EPOCH, "")),  # full resync ignores the watermark
        (T0, False, Keyset(T0 - HOUR, "")),  # incremental: re-read the lookback window
        (EPOCH + dt.timedelta(minutes=5), False, Keyset(EPOCH, "")),  # never before the epoch
    ],
)
def test_run_start(watermark, full, expected):
    assert run_start(watermark, HOUR, full=full) == expected


@pytest.mark.parametrize(
    ("current", "last", "expected"),
    [
        (Keyset(T0, "a"), None, Keyset(T0, "a")),  # empty page: stay
        (Keyset(T0, "a"), Keyset(T0, "b"), Keyset(T0, "b")),  # tie on the stamp: the id breaks it
        (Keyset(T0, "z"), Keyset(T0 + HOUR, "a"), Keyset(T0 + HOUR, "a")),  # later stamp wins over id
    ],
)
def test_advance(current, last, expected):
    assert advance(current, last) == expected


def test_advance_refuses_to_move_backwards():
    with pytest.raises(ValueError, match="backwards"):
        advance(Keyset(T0, "b"), Keyset(T0, "a"))


@pytest.mark.parametrize(
    ("watermark", "read", "expected"),
    [
        (None, None, None),
        (None, T0, T0),
        (T0, T0 - HOUR, T0),  # a lookback re-read never moves the watermark back
        (T0, T0 + HOUR, T0 + HOUR),
    ],
)
def test_next_watermark(watermark, read, expected):
    assert next_watermark(watermark, read) == expected


@pytest.mark.parametrize(
    ("returned", "limit", "truncated", "last"),
    [(10, 10, False, False), (9, 10, False, True), (0, 10, False, True), (3, 10, True, False)],
)
def test_page_is_last(returned, limit, truncated, last):
    assert page_is_last(returned, limit, truncated=truncated) is last


@pytest.mark.parametrize(
    ("stream", "page", "expected"),
    [
        # rows remain in the run's result: the cursor, the bound it reports and where to read next are kept
        (Stream(Keyset(EPOCH, "")), (Keyset(T0, "b"), T0 + HOUR, False, AT_20), Stream(Keyset(T0, "b"), T0 + HOUR, False, AT_20)),
        # the result is exhausted: the stream is done and keeps no result position
        (
            Stream(Keyset(T0, "b"), T0 + HOUR, False, AT_20),
            (Keyset(T0, "c"), T0 + HOUR, True, None),
            Stream(Keyset(T0, "c"), T0 + HOUR, True),
        ),
        # a page of future-stamped rows only: the cursor stays, the result position moves on
        (
            Stream(Keyset(T0, "c"), T0 + HOUR, False, AT_20),
            (None, T0 + HOUR, False, AT_40),
            Stream(Keyset(T0, "c"), T0 + HOUR, False, AT_40),
        ),
        # an empty result keeps the cursor and ends the stream
        (Stream(Keyset(T0, "c"), T0 + HOUR), (None, T0 + HOUR, True, None), Stream(Keyset(T0, "c"), T0 + HOUR, True)),
        # a finished stream stays where it is, whatever is handed to it
        (Stream(Keyset(T0, "c"), T0, True), (Keyset(T0 + HOUR, "z"), T0 + HOUR, False, AT_20), Stream(Keyset(T0, "c"), T0, True)),
    ],
)
def test_stream_after_page(stream, page, expected):
    last, bound, exhausted, result = page
    assert stream.after_page(last, bound, exhausted=exhausted, result=result) == expected


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (Stream(Keyset(EPOCH, "")), None),  # nothing read yet: no stamp to move a watermark to
        (Stream(Keyset(T0 - HOUR, "")), None),  # an incremental run's start (watermark minus lookback) is not a row
        (Stream(Keyset(T0, "006A"), T0, True), T0),  # the last row read
    ],
)
def test_stream_read_up_to(stream, expected):
    assert stream.read_up_to == expected


def test_stream_finished_keeps_cursor_and_bound():
    assert Stream(Keyset(T0, "a"), T0 + HOUR).finished() == Stream(Keyset(T0, "a"), T0 + HOUR, True)


def _state(**kw) -> SyncState:
    base = {
        "run_id": None,
        "trigger": None,
        "next_page": None,
        "opportunities": Stream(Keyset(EPOCH, "")),
        "links": Stream(Keyset(EPOCH, "")),
        "watermark": T0,
        "link_watermark": None,
        "page_size_limit": None,
        "status": "success",
    }
    return SyncState(**{**base, **kw})


IN_PROGRESS = {"run_id": RUN, "trigger": "tick", "next_page": 3, "opportunities": Stream(Keyset(T0 - HOUR, "x"), T0)}


@pytest.mark.parametrize(
    ("message", "state", "expect"),
    [
        # idle tick starts an incremental run from the watermark minus lookback
        (Message.tick(), _state(), ("page", 1, True, Keyset(T0 - HOUR, ""))),
        # tick during a run (lost continuation) resumes at the stored page and cursor
        (Message.tick(), _state(**IN_PROGRESS), ("page", 3, False, Keyset(T0 - HOUR, "x"))),
        # the expected continuation proceeds
        (Message.continuation(RUN, 3, T0), _state(**IN_PROGRESS), ("page", 3, False, Keyset(T0 - HOUR, "x"))),
        # a duplicate of an already-applied page is stale
        (Message.continuation(RUN, 2, T0), _state(**IN_PROGRESS), ("drop",)),
        # a continuation from a superseded run is stale
        (Message.continuation(uuid.UUID(int=8), 3, T0), _state(**IN_PROGRESS), ("drop",)),
        # a continuation whose bound disagrees with the run's is not ours
        (Message.continuation(RUN, 3, T0 + HOUR), _state(**IN_PROGRESS), ("drop",)),
        # a continuation after the run finished
        (Message.continuation(RUN, 3, T0), _state(), ("drop",)),
        # full resync supersedes a run in progress and starts from the beginning
        (Message.full_resync("m1"), _state(**IN_PROGRESS), ("page", 1, True, Keyset(EPOCH, ""))),
        # past the hop limit the run is stopped
        (Message.tick(), _state(**{**IN_PROGRESS, "next_page": 11}), ("stop",)),
    ],
)
def test_plan(message, state, expect):
    decision = plan(message, state, lookback=HOUR, max_pages=10)
    if expect[0] == "drop":
        assert isinstance(decision, Drop)
    elif expect[0] == "stop":
        assert isinstance(decision, StopRun)
    else:
        assert isinstance(decision, PagePlan)
        assert (decision.page, decision.new_run, decision.opportunities.cursor) == expect[1:]
        if decision.new_run:
            assert decision.run_id != RUN
            assert decision.superseded_run == state.run_id


@pytest.mark.parametrize(
    ("message", "started", "expect"),
    [
        (Message.full_resync("m1"), True, "drop"),  # a remembered id: a redelivery, not started twice
        (Message.full_resync("m1"), False, "page"),  # a new id starts a run
        (Message.full_resync(None), True, "page"),  # no id (the CLI's own): nothing to recognise
        # replayed from the dead letters: a new id, but a resync started since it was first requested
        (Message.full_resync("r1", dt.datetime(2026, 12, 1, tzinfo=dt.UTC)), True, "drop"),
        (Message.full_resync("r1", dt.datetime(2026, 12, 1, tzinfo=dt.UTC)), False, "page"),  # none since: it starts
        (Message.tick(), True, "page"),  # only full_resync consults the memory
    ],
)
def test_plan_drops_a_full_resync_already_started(message, started, expect):
    decision = plan(message, _state(), lookback=HOUR, max_pages=10, resync_started=started)
    assert isinstance(decision, Drop if expect == "drop" else PagePlan)


@pytest.mark.parametrize("state", [_state(page_size_limit=250), _state(**IN_PROGRESS, page_size_limit=250)])
def test_plan_carries_the_page_size_limit(state):
    assert plan(Message.tick(), state, lookback=HOUR, max_pages=10).page_size_limit == 250
