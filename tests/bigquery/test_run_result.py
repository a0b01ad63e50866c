"""The run's single BigQuery evaluation, read slice by slice, through the real client and the emulator.

Jobs are counted at the library seam: ``client.query`` is wrapped (not replaced), so every
job the real client creates is seen, whoever creates it.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from unittest import mock

import pytest

from standins.generator import BASE_TIME, generate, to_history_mode
from sync.bigquery.cursor import Keyset, advance
from sync.bigquery.probe import CLOCK_SKEW
from sync.bigquery.results import JobRef, ResultPosition
from sync.bigquery.source import StreamRead
from sync.bigquery.streams import StreamKind

FUTURE = "2095-06-01T00:00:00Z"


def _expected_order(data):
    """Opportunity ids in (change stamp, id) order; the generator stamps every joined row no later."""
    opps = data.rows("opportunity")
    return [o["id"] for o in sorted(opps, key=lambda o: (dt.datetime.fromisoformat(o["_fivetran_synced"]), o["id"]))]


def _drain(source, stream, limit, *, deadline=None, tamper=None):
    """Read a stream to its end as successive pages would; returns (rows, pages)."""
    after, bound, position, rows, pages = Keyset.start(), None, None, [], []
    while True:
        if tamper is not None and position is not None:
            position = tamper(len(pages), position)
        page = source.read(StreamRead(stream, after, bound, position, limit, deadline or time.monotonic() + 120))
        pages.append(page)
        rows += page.rows
        after, bound, position = advance(after, page.last), page.upper_bound, page.position
        if page.exhausted:
            return rows, pages
        assert len(pages) < 1000


@pytest.fixture
def spy(env):
    """Counts the jobs the real client creates (``client.query`` wrapped, not replaced)."""
    with mock.patch.object(env.bq, "query", wraps=env.bq.query) as wrapped:
        yield wrapped


def _ready(env, spy):
    """The env's source with its schema resolved; the spy counts from here on."""
    source = env.source()
    source.tables()
    spy.reset_mock()
    return source


def test_one_evaluation_serves_every_page(env, spy):
    data = generate(120, seed=81, messy=False)
    env.seed(data)
    source = _ready(env, spy)
    rows, pages = _drain(source, StreamKind.OPPORTUNITIES, 25)
    assert [r["id"] for r in rows] == _expected_order(data)  # every row once, in cursor order
    assert len(pages) == 5
    assert spy.call_count == 1  # one job for the whole run ...
    assert sum(p.cost.jobs for p in pages) == 1  # ... and the run's own count agrees
    assert all(p.cost.bytes_processed == 0 for p in pages)  # the emulator reports 0 bytes


def test_links_are_read_from_one_evaluation_too(env, spy):
    data = generate(150, seed=82, messy=False)
    env.seed(data)
    source = _ready(env, spy)
    rows, pages = _drain(source, StreamKind.CALL_LINKS, 10)
    links = {(r["call_id"], r["object_id"]) for r in data.rows("call_context_integration")}
    assert sorted((r["call_id"], r["object_id"]) for r in rows) == sorted(links)
    assert len(pages) == -(-len(links) // 10)
    assert spy.call_count == 1


def test_a_gone_result_is_evaluated_again_from_the_cursor(env, spy, caplog):
    data = generate(100, seed=83, messy=False)
    env.seed(data)
    source = _ready(env, spy)

    def lose_it(page_no, position):
        # Before page 3 the stored job "expires": BigQuery answers 404 for an unknown job.
        if page_no == 2:
            return ResultPosition(JobRef(position.job.project, position.job.location, "expired-job-id"), position.offset)
        return position

    rows, pages = _drain(source, StreamKind.OPPORTUNITIES, 30, tamper=lose_it)
    assert [r["id"] for r in rows] == _expected_order(data)  # exact: nothing lost, nothing doubled
    assert [p.reevaluated for p in pages] == [False, False, True, False]
    assert spy.call_count == 2
    assert any(getattr(r, "event", None) == "result_gone" for r in caplog.records)


@pytest.mark.parametrize("shift", [-7, 5])
def test_a_misaligned_offset_neither_doubles_nor_skips(env, spy, shift):
    data = generate(90, seed=84, messy=False)
    env.seed(data)
    source = _ready(env, spy)

    def misalign(page_no, position):
        return ResultPosition(position.job, position.offset + shift) if page_no == 1 else position

    rows, _pages = _drain(source, StreamKind.OPPORTUNITIES, 20, tamper=misalign)
    assert [r["id"] for r in rows] == _expected_order(data)
    # An offset short of the cursor re-reads and skips; one past it is caught by the row before the slice.
    assert spy.call_count == (1 if shift < 0 else 2)


def test_a_page_cut_by_the_time_budget_resumes_at_its_offset(env, spy):
    data = generate(12, seed=85, messy=False)
    env.seed(data)
    source = _ready(env, spy)
    spent = time.monotonic() - 1
    rows, pages = _drain(source, StreamKind.OPPORTUNITIES, 5, deadline=spent)
    assert [r["id"] for r in rows] == _expected_order(data)
    assert all(len(p.rows) == 1 and p.truncated for p in pages[:-1])  # one row, then the budget stops it
    assert spy.call_count == 1


def test_future_stamped_rows_take_their_place_at_the_bound_page_by_page(env, spy):
    data = generate(30, seed=86, messy=False)
    future = [o["id"] for o in data.rows("opportunity")[:12]]
    for o in data.rows("opportunity")[:12]:
        o["_fivetran_synced"] = FUTURE
    env.seed(data)
    source = _ready(env, spy)
    before = dt.datetime.now(dt.UTC)
    rows, pages = _drain(source, StreamKind.OPPORTUNITIES, 4)
    ids = [r["id"] for r in rows]
    assert sorted(ids) == sorted(_expected_order(data))  # every row once, the twelve future ones included
    first = pages[0]
    assert first.upper_bound < before  # the frozen bound never passes the source clock
    assert before < first.cap <= dt.datetime.now(dt.UTC) + CLOCK_SKEW
    # Placed at the bound: after every row stamped before it, in id order among those stamped at it.
    at_bound = [r["id"] for r in rows if r["change_stamp"] >= first.upper_bound]
    assert ids[-len(at_bound) :] == at_bound == sorted(at_bound)
    assert set(future) <= set(at_bound)
    assert len(pages) >= 8  # 30 rows in pages of 4: the future ones span three of them
    assert all(p.last is None or p.last.stamp <= first.upper_bound for p in pages)  # the cursor never passes the bound
    assert sorted(r["id"] for p in pages for r in p.future) == sorted(future)  # each flagged once
    assert [p.future_total for p in pages if p.future_starts] == [12]  # warned once per run, with the count
    assert spy.call_count == 1  # one evaluation for every page


def test_probe_reads_stamp_columns_only_and_sees_a_landed_row(env, spy):
    data = generate(40, seed=87, messy=False)
    env.seed(data)
    source = _ready(env, spy)
    first = source.probe()
    assert spy.call_count == 1
    sql = spy.call_args.args[0]
    columns = set(re.findall(r"\b[a-z]\.`([A-Za-z_]+)`", sql))
    assert columns == {"_fivetran_synced"}  # Fivetran's write stamp: no data column, not even last-modified
    assert (first.marks["opportunity"].rows, first.marks["opportunity"].active) == (40, 40)
    assert first.marks["opportunity"].latest == max(
        dt.datetime.fromisoformat(o["_fivetran_synced"]) for o in data.rows("opportunity")
    )
    assert first.eligible == frozenset(StreamKind)
    assert set(first.tables[StreamKind.OPPORTUNITIES]) == {
        "opportunity",
        "account",
        "user",
        "opportunity_history",
        "gong_opportunity",
    }

    late = {**data.rows("opportunity")[0], "id": "006LATE", "_fivetran_synced": (BASE_TIME).isoformat()}  # an old stamp
    env.append("opportunity", [late])
    second = source.probe()
    assert second.marks["opportunity"] != first.marks["opportunity"]  # the count moved although the stamp did not
    assert {k: v for k, v in second.marks.items() if k != "opportunity"} == {
        k: v for k, v in first.marks.items() if k != "opportunity"
    }


def test_probe_without_fivetran_synced_is_not_eligible(env, spy):
    data = generate(10, seed=88, messy=False)
    del data.schemas["account"]["_fivetran_synced"]
    env.seed(data)
    source = _ready(env, spy)
    spy.reset_mock()
    probe = source.probe()
    assert probe.eligible == frozenset({StreamKind.CALL_LINKS})
    assert set(probe.marks) == {"call_context_integration"}  # the other tables are not even read
    assert "`account`" not in spy.call_args.args[0]
    assert probe.cap > dt.datetime.now(dt.UTC)


def test_probe_sees_a_history_mode_deletion_that_leaves_fivetran_synced_alone(env, spy):
    data = generate(20, seed=89, batch_size=10, messy=False)
    to_history_mode(data, "opportunity")
    env.seed(data)
    source = _ready(env, spy)
    before = source.probe()
    env.retire("opportunity", data.rows("opportunity")[3]["id"], "2026-11-03T00:00:00Z")  # no row added, no synced stamp moved
    after = source.probe()
    assert after.marks["opportunity"].rows == before.marks["opportunity"].rows
    assert after.marks["opportunity"].latest > before.marks["opportunity"].latest  # the finite _fivetran_end shows it
    assert after.marks["opportunity"].active == before.marks["opportunity"].active - 1  # even when it ended long ago
    columns = set(re.findall(r"\b[a-z]\.`([A-Za-z_]+)`", spy.call_args.args[0]))
    assert columns == {"_fivetran_synced", "_fivetran_start", "_fivetran_end", "_fivetran_active"}
