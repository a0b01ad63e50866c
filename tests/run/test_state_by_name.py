"""Every field of the run state is written to ``sync_status`` and read back by name."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

from sync.bigquery.cursor import Keyset, Stream
from sync.bigquery.probe import Mark
from sync.bigquery.results import JobRef, ResultPosition
from sync.postgres.db import connect_url
from sync.postgres.transaction import transaction
from sync.run import state as st
from sync.run.page_plan import PagePlan

_STAMP = dt.datetime(2026, 11, 1, 8, tzinfo=dt.UTC)
_HOUR = dt.timedelta(hours=1)


def _page(run_id: uuid.UUID, page: int, *, done: bool, marks: dict[str, Mark]) -> st.PageProgress:
    opportunities = Stream(Keyset(_STAMP, "006A"), _STAMP + _HOUR, False, ResultPosition(JobRef("proj", "EU", "job-1"), 40))
    links = Stream(
        Keyset(_STAMP + _HOUR / 2, "call-9"), _STAMP + 2 * _HOUR, True, ResultPosition(JobRef("proj", None, "job-2"), 7)
    )
    plan = PagePlan(run_id, "full_resync", page, new_run=page == 1, opportunities=opportunities, links=links)
    return st.PageProgress(
        plan,
        opportunities,
        links,
        watermark=_STAMP - _HOUR,
        link_watermark=_STAMP - 2 * _HOUR,
        written=5,
        skipped=1,
        page_size_limit=500,
        run_marks=marks,
        ids_complete=True,
        run_done=done,
    )


def test_every_state_field_round_trips_through_sync_status_by_name(database_url):
    owner = uuid.uuid4()
    finished, marks = {"opportunity": Mark(_STAMP, 10, 9, 1)}, {"call_link": Mark(_STAMP + _HOUR, 3)}
    conn = connect_url(database_url)
    try:
        with transaction(conn):
            blank = st.read_state(conn)
        # A run that ended leaves the watermarks and its marks; the next one is in flight.
        for progress in (
            _page(uuid.UUID(int=1), 1, done=True, marks=finished),
            _page(uuid.UUID(int=2), 1, done=False, marks=marks),
        ):
            with transaction(conn):
                assert st.acquire_lease(conn, owner, 60) is not None
                st.record_page(conn, progress)
        with transaction(conn):
            assert st.acquire_lease(conn, owner, 60) is not None
            st.record_attempt(conn, owner, 2, 250, 500)
        with transaction(conn):
            stored = st.read_state(conn)
    finally:
        conn.close()

    progress = _page(uuid.UUID(int=2), 1, done=False, marks=marks)
    expected = st.SyncState(
        run_id=uuid.UUID(int=2),
        trigger="full_resync",
        next_page=2,
        opportunities=progress.opportunities,
        links=progress.links,
        watermark=_STAMP - _HOUR,
        link_watermark=_STAMP - 2 * _HOUR,
        page_size_limit=500,
        status="running",
        source_marks=finished,
        run_source_marks=marks,
        ids_complete=True,
        page_attempts=2,
        page_attempt_size=250,
    )
    assert stored == expected
    # Every field took a value a fresh row does not hold: a field added to SyncState but not
    # stored, or not read back, fails here.
    same = [f.name for f in dataclasses.fields(st.SyncState) if getattr(stored, f.name) == getattr(blank, f.name)]
    assert same == []
