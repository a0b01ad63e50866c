"""A slice of the run's result turned into a page, and the run-start probe's decision: pure, table-driven."""

from __future__ import annotations

import datetime as dt

import pytest

from sync.bigquery import slices
from sync.bigquery.cursor import Keyset
from sync.bigquery.probe import Mark, Probe, RunStart, decide, marks_from_json, marks_json
from sync.bigquery.slices import take
from sync.bigquery.streams import SHAPES, StreamKind, link_keyset, split_link_key
from sync.core import memory

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
BOUND = T0 + dt.timedelta(hours=1)
FUTURE = dt.datetime(2095, 1, 1, tzinfo=dt.UTC)
OPP = SHAPES[StreamKind.OPPORTUNITIES]


def _row(stamp, id_, *, beyond=False, **extra):
    """A result row as the SQL places it: a stamp beyond the bound sits at the bound."""
    return {"change_stamp": stamp, "cursor_stamp": min(stamp, BOUND), "id": id_, "beyond_cap": beyond, **extra}


# A result in (cursor_stamp, id) order: two future-stamped rows (x, z) take their place at the
# bound, among the bounded rows stamped there (c, y).
RESULT = [
    _row(T0, "a", run_upper_bound=BOUND, run_cap=BOUND + dt.timedelta(minutes=5)),
    _row(T0, "b"),
    _row(BOUND, "c"),
    _row(FUTURE, "x", beyond=True, future_total=2),
    _row(BOUND, "y"),
    _row(FUTURE, "z", beyond=True),
]


# A limit beyond every slice below: the page takes the slice whole.
_WHOLE = 100


def _never():
    return False


@pytest.mark.parametrize(
    ("rows", "after", "bound", "starts", "pred", "expect_ids", "expect_last", "expect_consumed"),
    [
        # The first page of a result: the bound and cap come from its first row.
        (RESULT[:3], Keyset.start(), None, True, False, ["a", "b", "c"], Keyset(BOUND, "c"), 3),
        # A later page after the cursor (b): the predecessor row b equals the cursor.
        (RESULT[1:4], Keyset(T0, "b"), BOUND, False, True, ["c", "x"], Keyset(BOUND, "x"), 2),
        # An offset one row short: row b is at the cursor and is skipped, not written twice.
        (RESULT[0:4], Keyset(T0, "b"), BOUND, False, True, ["c", "x"], Keyset(BOUND, "x"), 3),
        # A future-stamped row moves the cursor to its place at the bound, never beyond it.
        (RESULT[2:5], Keyset(BOUND, "c"), BOUND, False, True, ["x", "y"], Keyset(BOUND, "y"), 2),
        # The predecessor is a future-stamped row at the cursor: the slice lines up.
        (RESULT[3:6], Keyset(BOUND, "x"), BOUND, False, True, ["y", "z"], Keyset(BOUND, "z"), 2),
        # An empty slice (the result was exhausted).
        ([], Keyset(BOUND, "z"), BOUND, False, False, [], None, 0),
    ],
)
def test_take(rows, after, bound, starts, pred, expect_ids, expect_last, expect_consumed):
    taken = take(
        rows, OPP, after=after, upper_bound=bound, starts_result=starts, with_predecessor=pred, limit=_WHOLE, stop=_never
    )
    assert [r["id"] for r in taken.rows] == expect_ids
    assert taken.last == expect_last
    assert taken.consumed == expect_consumed
    assert not taken.misaligned
    assert taken.upper_bound == BOUND
    assert taken.last is None or taken.last.stamp <= BOUND  # the cursor never passes the bound


def test_first_row_of_a_result_carries_its_bound_and_cap():
    # The stored bound is ignored: the result's own (capped) bound wins.
    taken = take(
        RESULT,
        OPP,
        after=Keyset.start(),
        upper_bound=FUTURE,
        starts_result=True,
        with_predecessor=False,
        limit=_WHOLE,
        stop=_never,
    )
    assert (taken.upper_bound, taken.cap) == (BOUND, BOUND + dt.timedelta(minutes=5))
    assert [r["id"] for r in taken.rows] == ["a", "b", "c", "x", "y", "z"]
    assert [r["id"] for r in taken.future] == ["x", "z"]
    assert (taken.future_starts, taken.future_total) == (True, 2)


@pytest.mark.parametrize(
    ("rows", "after", "future_starts"),
    [
        (RESULT[2:5], Keyset(BOUND, "c"), True),  # x, the first future-stamped row, is on this page
        (RESULT[4:6], Keyset(BOUND, "y"), False),  # x came on an earlier page: they started there
    ],
)
def test_future_rows_start_once_per_result(rows, after, future_starts):
    taken = take(rows, OPP, after=after, upper_bound=BOUND, starts_result=False, with_predecessor=True, limit=_WHOLE, stop=_never)
    assert taken.future_starts is future_starts


def test_predecessor_after_the_cursor_means_the_offset_overshot():
    # The stored offset points past c although the cursor is at b: c would be skipped.
    taken = take(
        RESULT[2:4],
        OPP,
        after=Keyset(T0, "b"),
        upper_bound=BOUND,
        starts_result=False,
        with_predecessor=True,
        limit=_WHOLE,
        stop=_never,
    )
    assert taken.misaligned
    assert taken.rows == []


def test_spent_budget_cuts_the_page_after_a_row():
    taken = take(
        RESULT[:3],
        OPP,
        after=Keyset.start(),
        upper_bound=None,
        starts_result=True,
        with_predecessor=False,
        limit=_WHOLE,
        stop=lambda: True,
    )
    assert taken.truncated
    assert (taken.consumed, taken.last) == (1, Keyset(T0, "a"))


def test_null_id_keys_first_at_its_stamp_as_bigquery_sorts_nulls():
    rows = [_row(T0, None, run_upper_bound=BOUND), _row(T0, "a")]
    taken = take(
        rows, OPP, after=Keyset.start(), upper_bound=None, starts_result=True, with_predecessor=False, limit=_WHOLE, stop=_never
    )
    assert [r["id"] for r in taken.rows] == [None, "a"]  # passed on: the transform skips and records it
    assert taken.last == Keyset(T0, "a")
    # A page that ended on the NULL-id row: that row, as predecessor, sits exactly at the cursor.
    again = take(
        rows, OPP, after=Keyset(T0, ""), upper_bound=BOUND, starts_result=False, with_predecessor=True, limit=_WHOLE, stop=_never
    )
    assert not again.misaligned
    assert [r["id"] for r in again.rows] == ["a"]


# A result whose ids hold NUL (the transform skips those rows): b0 alone, then a run c0..c2 before d.
NUL_RESULT = [
    _row(T0, "a", run_upper_bound=BOUND),
    _row(T0, "b\x00"),
    _row(T0, "c"),
    _row(T0, "c\x00\x01"),
    _row(T0, "c\x00\x02"),
    _row(T0, "c\x00\x03"),
    _row(T0, "d"),
]


@pytest.mark.parametrize(
    ("start", "after", "limit", "expect_ids", "expect_last", "expect_ended"),
    [
        # A page that would end on b\0 goes on to c: b\0 is taken (and skipped) but is not the cursor.
        (0, Keyset.start(), 2, ["a", "b\x00", "c"], Keyset(T0, "c"), False),
        # One row a page: the page after a takes b\0 and c.
        (1, Keyset(T0, "a"), 1, ["b\x00", "c"], Keyset(T0, "c"), False),
        # One row a page through a run of three: they all go with d, however long the run.
        (3, Keyset(T0, "c"), 1, ["c\x00\x01", "c\x00\x02", "c\x00\x03", "d"], Keyset(T0, "d"), False),
        # A page that ends on a good row stops at its limit as before.
        (0, Keyset.start(), 3, ["a", "b\x00", "c"], Keyset(T0, "c"), False),
    ],
)
def test_a_page_never_ends_on_a_row_whose_key_postgres_cannot_hold(start, after, limit, expect_ids, expect_last, expect_ended):
    pred = start > 0
    rows = NUL_RESULT[start - 1 if pred else 0 :]
    taken = take(
        rows, OPP, after=after, upper_bound=BOUND, starts_result=not pred, with_predecessor=pred, limit=limit, stop=_never
    )
    assert [r["id"] for r in taken.rows] == expect_ids
    assert taken.last == expect_last
    assert taken.consumed == len(expect_ids)
    assert taken.ended is expect_ended


def test_nul_rows_ending_the_result_end_the_stream_with_the_cursor_before_them():
    rows = [_row(T0, "a", run_upper_bound=BOUND), _row(T0, "a\x00"), _row(T0, "a\x00\x00")]
    taken = take(
        rows, OPP, after=Keyset.start(), upper_bound=None, starts_result=True, with_predecessor=False, limit=1, stop=_never
    )
    assert [r["id"] for r in taken.rows] == ["a"]
    assert not taken.ended
    rest = take(
        rows, OPP, after=Keyset(T0, "a"), upper_bound=BOUND, starts_result=False, with_predecessor=True, limit=1, stop=_never
    )
    assert [r["id"] for r in rest.rows] == ["a\x00", "a\x00\x00"]
    assert (rest.last, rest.ended) == (None, True)  # the result is read; the cursor stays at a


def test_a_spent_budget_does_not_end_a_page_on_a_nul_row():
    taken = take(
        NUL_RESULT,
        OPP,
        after=Keyset.start(),
        upper_bound=None,
        starts_result=True,
        with_predecessor=False,
        limit=_WHOLE,
        stop=lambda: True,
    )
    assert taken.truncated
    assert [r["id"] for r in taken.rows] == ["a"]
    later = take(
        NUL_RESULT,
        OPP,
        after=Keyset(T0, "a"),
        upper_bound=BOUND,
        starts_result=False,
        with_predecessor=True,
        limit=_WHOLE,
        stop=lambda: True,
    )
    assert [r["id"] for r in later.rows] == ["b\x00", "c"]
    assert later.last == Keyset(T0, "c")


def test_link_keys_sort_like_the_sql_tuple_order():
    # ("a", "z") < ("ab", "c") in SQL; the separator sorts below every printable character.
    assert link_keyset(T0, "a", "z") < link_keyset(T0, "ab", "c")
    assert split_link_key(link_keyset(T0, "call-1", "006x").key) == ("call-1", "006x")


# -- the probe's decision -------------------------------------------------------------------

CAP = T0 + dt.timedelta(days=30)
MARKS = {
    "opportunity": Mark(T0, 10),
    "account": Mark(T0, 3),
    "call_context_integration": Mark(T0, 4),
}
TABLES = {StreamKind.OPPORTUNITIES: ("opportunity", "account"), StreamKind.CALL_LINKS: ("call_context_integration",)}
BOTH = frozenset(StreamKind)
W = {StreamKind.OPPORTUNITIES: T0, StreamKind.CALL_LINKS: T0}


def _probe(marks=MARKS, eligible=BOTH):
    return Probe(cap=CAP, marks=marks, tables=TABLES, eligible=eligible)


@pytest.mark.parametrize(
    ("probe", "full", "watermarks", "committed", "expected"),
    [
        # Nothing landed since the last completed run: an idle tick skips both streams.
        (_probe(), False, W, MARKS, RunStart(skip=BOTH)),
        # An account row landed (its stamp moved): the opportunity stream is read, links are not.
        (
            _probe({**MARKS, "account": Mark(T0 + dt.timedelta(seconds=1), 3)}),
            False,
            W,
            MARKS,
            RunStart(skip=frozenset({StreamKind.CALL_LINKS})),
        ),
        # A History Mode deletion that ended before the table's newest stamp: one active version fewer.
        (
            _probe({**MARKS, "opportunity": Mark(T0, 10, 9)}),
            False,
            W,
            {**MARKS, "opportunity": Mark(T0, 10, 10)},
            RunStart(skip=frozenset({StreamKind.CALL_LINKS})),
        ),
        # A row landed with a stamp no greater than the table's newest (same Fivetran batch): the count moved.
        (
            _probe({**MARKS, "opportunity": Mark(T0, 11)}),
            False,
            W,
            MARKS,
            RunStart(skip=frozenset({StreamKind.CALL_LINKS})),
        ),
        # A row left the future (Fivetran rewrote it with its own clock): one future-stamped row fewer.
        (
            _probe({**MARKS, "account": Mark(T0, 3, None, 0)}),
            False,
            W,
            {**MARKS, "account": Mark(T0, 3, None, 1)},
            RunStart(skip=frozenset({StreamKind.CALL_LINKS})),
        ),
        # A full resync reads everything whatever the probe says.
        (_probe(), True, W, MARKS, RunStart()),
        # No marks recorded yet (first run after the upgrade): read.
        (_probe(), False, W, None, RunStart()),
        # A stream never synced is read even when its marks match.
        (_probe(), False, {**W, StreamKind.CALL_LINKS: None}, MARKS, RunStart(skip=frozenset({StreamKind.OPPORTUNITIES}))),
        # Without _fivetran_synced the stamps cannot show a late row: the stream is read.
        (_probe(eligible=frozenset({StreamKind.CALL_LINKS})), False, W, MARKS, RunStart(skip=frozenset({StreamKind.CALL_LINKS}))),
        # A table appeared or vanished since the last run: its mark is missing, read.
        (
            _probe(),
            False,
            W,
            {k: v for k, v in MARKS.items() if k != "account"},
            RunStart(skip=frozenset({StreamKind.CALL_LINKS})),
        ),
        # A watermark beyond the source clock is repaired, never skipped.
        (
            _probe(),
            False,
            {StreamKind.OPPORTUNITIES: FUTURE, StreamKind.CALL_LINKS: T0},
            MARKS,
            RunStart(skip=frozenset({StreamKind.CALL_LINKS}), repair=frozenset({StreamKind.OPPORTUNITIES})),
        ),
        # ... also in a full resync.
        (
            _probe(),
            True,
            {StreamKind.OPPORTUNITIES: T0, StreamKind.CALL_LINKS: FUTURE},
            MARKS,
            RunStart(repair=frozenset({StreamKind.CALL_LINKS})),
        ),
        # A watermark exactly at the cap is not in the future.
        (_probe(), False, {StreamKind.OPPORTUNITIES: CAP, StreamKind.CALL_LINKS: T0}, MARKS, RunStart(skip=BOTH)),
    ],
)
def test_decide(probe, full, watermarks, committed, expected):
    assert decide(probe, full=full, watermarks=watermarks, committed=committed) == expected


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (marks_json(MARKS), MARKS),  # as written by marks_json
        ({"opportunity": {"latest": None, "rows": 0, "active": 0}}, {"opportunity": Mark(None, 0, 0)}),  # an empty table
        ({"opportunity": {"latest": None, "rows": 0}}, {"opportunity": Mark(None, 0)}),  # stored without the active count
        ({"opportunity": {"latest": None, "rows": 2, "active": 2, "future": 1}}, {"opportunity": Mark(None, 2, 2, 1)}),
        (None, None),  # never recorded
        ({"opportunity": {"latest": "2026-11-01T00:00:00+00:00"}}, None),  # malformed: treated as unknown
    ],
)
def test_marks_round_trip(stored, expected):
    assert marks_from_json(stored) == expected


# ---- the memory budget: a page ends when its rows weigh what the function's memory allows ----------


def _heavy(stamp, id_, chars, **extra):
    return _row(stamp, id_, stage_history="x" * chars, **extra)


_MIB = 2**20
HEAVY = [_heavy(T0, f"r{i}", _MIB, **({"run_upper_bound": BOUND} if i == 0 else {})) for i in range(6)]


def test_a_budget_ends_the_page_after_the_row_that_fills_it():
    per_row = memory.row_mib(slices.text_chars(HEAVY[1]))
    budget = slices.Budget(2.5 * per_row)
    taken = take(
        HEAVY,
        OPP,
        after=Keyset.start(),
        upper_bound=None,
        starts_result=True,
        with_predecessor=False,
        limit=_WHOLE,
        stop=_never,
        budget=budget,
    )
    # Rows 1 and 2 leave room; row 3 fills it. Not a timeout, and not the result's end.
    assert [r["id"] for r in taken.rows] == ["r0", "r1", "r2"]
    assert (taken.full, taken.truncated, taken.ended) == (True, False, False)
    assert taken.last == Keyset(T0, "r2")


def test_a_row_heavier_than_the_whole_budget_is_a_page_of_its_own():
    taken = take(
        HEAVY,
        OPP,
        after=Keyset.start(),
        upper_bound=None,
        starts_result=True,
        with_predecessor=False,
        limit=_WHOLE,
        stop=_never,
        budget=slices.Budget(0.001),
    )
    assert [r["id"] for r in taken.rows] == ["r0"]
    assert taken.full


def test_light_rows_fill_the_budget_exactly_at_the_largest_page_the_config_accepts():
    budget = slices.Budget(memory.page_budget_mib(256 * 1000**2 / 2**20))
    row = _row(T0, "006000000000001", name="x" * (memory.MODELLED_TEXT_CHARS - 40))
    largest = memory.largest_page(256 * 1000**2 / 2**20)
    for _ in range(largest - 1):
        budget.add(row)
    assert not budget.full
    budget.add(row)
    budget.add(row)
    assert budget.full


@pytest.mark.parametrize(
    ("expected", "left"),
    [
        (None, 100),  # nothing known of the weight (a new process): a first small read
        (1.0, 10),  # the stream's last page averaged 1 MiB a row
        (0.001, 10_000),  # light rows: the whole page in one read
    ],
)
def test_reads_are_sized_by_what_still_fits(expected, left):
    assert slices.Budget(10.0, expected).rows_left() == left


def test_reads_follow_the_weight_seen_on_this_page():
    budget = slices.Budget(10.0, 0.001)
    budget.add(HEAVY[1])
    per_row = memory.row_mib(slices.text_chars(HEAVY[1]))
    assert budget.rows_left() == max(1, int((10.0 - per_row) / per_row))
