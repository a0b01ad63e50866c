"""The one rule for a page's size: failed attempts weigh against it, enough halve it to one row, then refuse it;
commits double it back."""

from __future__ import annotations

import pytest

from sync.core.errors import PermanentError, RetryableError, TimeBudgetError, classify
from sync.run.pacing import (
    MIN_PAGE_SIZE,
    STRIKES_TO_SHRINK,
    Attempt,
    after_commit,
    next_attempt,
    page_size,
    shrunk,
    weight,
)


@pytest.mark.parametrize(
    ("configured", "limit", "expected"),
    [
        (2000, None, 2000),  # no limit: the configured size
        (2000, 500, 500),
        (2000, 5000, 2000),  # a limit above the configured size (SYNC_PAGE_SIZE lowered since)
        (5, 10, 5),
    ],
)
def test_page_size(configured, limit, expected):
    assert page_size(configured, limit) == expected


class _StatementTimeout(Exception):
    """What pg8000 raises for 57014, as far as ``sqlstate_of`` reads it."""

    def __init__(self) -> None:
        super().__init__({"C": "57014", "M": "canceling statement due to statement timeout"})


_DIED = None  # nothing of ours ran to see it
_WRITE_TIMEOUT = TimeBudgetError("the time budget ran out while writing")
_STATEMENT_TIMEOUT = classify(_StatementTimeout())
_READ_TIMEOUT = RetryableError("bigquery read timed out")
_READ_TIMEOUT.__cause__ = TimeoutError()
_CONNECTION_LOST = RetryableError("connection failure: ConnectionResetError")
_PERMANENT = PermanentError("a required column is missing")


@pytest.mark.parametrize(
    ("failure", "size", "expected"),
    [
        (_DIED, 40, 1),  # one death may be the platform's
        (_DIED, 1, 1),
        (_WRITE_TIMEOUT, 40, STRIKES_TO_SHRINK),  # seen: proof enough to halve now
        (_STATEMENT_TIMEOUT, 40, STRIKES_TO_SHRINK),
        (_READ_TIMEOUT, 40, STRIKES_TO_SHRINK),
        (_WRITE_TIMEOUT, 1, 1),  # at one row the next step refuses: the row's own write counts like a death
        (_STATEMENT_TIMEOUT, 1, 1),
        (_READ_TIMEOUT, 1, 0),  # a slow BigQuery read says nothing about the row
        (_CONNECTION_LOST, 40, 0),  # not the page's doing
        (_CONNECTION_LOST, 1, 0),
        (_PERMANENT, 40, 0),
    ],
)
def test_weight_of_a_failed_attempt(failure, size, expected):
    assert weight(failure, size) == expected


def _attempts(failures, configured=2000, limit=None, strikes=0, struck_at=None):
    """Drive the rule as the pipeline does: record each attempt as a death, re-weigh what was seen.

    ``failures`` maps the attempt's page size to how it ends (``"commit"`` or a failure). Returns
    the sizes read and whether the page was refused in the end.
    """
    sizes = []
    for _ in range(200):
        attempt = next_attempt(configured, limit, strikes, struck_at)
        if attempt.refuse:
            return sizes, True
        limit, size = attempt.limit, page_size(configured, attempt.limit)
        sizes.append(size)
        ending = failures(size)
        if ending == "commit":
            return sizes, False
        strikes, struck_at = attempt.number - 1 + weight(ending, size), size
        if strikes == 0:
            struck_at = None
    raise AssertionError(f"neither committed nor refused: {sizes[-5:]}")


def test_a_page_that_times_out_is_halved_at_once_then_commits():
    sizes, refused = _attempts(lambda size: "commit" if size <= 500 else _STATEMENT_TIMEOUT)
    assert (sizes, refused) == ([2000, 1000, 500], False)


def test_a_row_whose_write_always_times_out_is_refused_after_three_tries_alone():
    sizes, refused = _attempts(lambda size: _WRITE_TIMEOUT)
    assert refused
    assert sizes[:4] == [2000, 1000, 500, 250]
    assert sizes[-STRIKES_TO_SHRINK:] == [1] * STRIKES_TO_SHRINK
    assert sizes.count(1) == STRIKES_TO_SHRINK


def test_deaths_and_timeouts_count_by_the_same_rule():
    ends = iter([_DIED, _DIED, _STATEMENT_TIMEOUT])  # two deaths at 2000, then a timeout: one halving
    sizes, refused = _attempts(lambda size: next(ends, "commit"))
    assert (sizes, refused) == ([2000, 2000, 2000, 1000], False)


def test_a_failure_unrelated_to_the_page_keeps_earlier_deaths():
    ends = iter([_DIED, _DIED, _CONNECTION_LOST, _DIED])
    sizes, _ = _attempts(lambda size: next(ends, "commit"))
    assert sizes == [2000, 2000, 2000, 2000, 1000]  # the third death halves it; the lost connection was not one


def test_a_read_that_times_out_at_one_row_never_refuses_the_row():
    seen = []

    def ending(size):
        seen.append(size)
        return _READ_TIMEOUT if len(seen) < 40 else "commit"

    sizes, refused = _attempts(ending, limit=1)
    assert (len(sizes), refused) == (40, False)
    assert set(sizes) == {1}


@pytest.mark.parametrize(
    ("configured", "limit", "expected"),
    [
        (2000, None, None),  # nothing to grow back from
        (2000, 250, 500),  # doubles after a committed page
        (2000, 1000, None),  # doubling reaches the configured size: the limit is gone
        (2000, 1500, None),
    ],
)
def test_after_commit_grows_back(configured, limit, expected):
    assert after_commit(configured, limit) == expected


@pytest.mark.parametrize(("configured", "limit", "expected"), [(2000, None, None), (2000, 250, 250), (2000, 4000, None)])
def test_shrunk_is_recorded_only_below_the_configured_size(configured, limit, expected):
    assert shrunk(configured, limit) == expected


def test_a_timeout_streak_then_recovery_round_trips():
    sizes, _ = _attempts(lambda size: "commit" if size == MIN_PAGE_SIZE else _READ_TIMEOUT)
    assert sizes[-1] == MIN_PAGE_SIZE
    limit, commits = MIN_PAGE_SIZE, 0
    while limit is not None:
        limit = after_commit(2000, limit)
        commits += 1
    assert commits == 11  # 1 -> 2 -> ... -> 1024 -> gone: back to full size within a few pages


@pytest.mark.parametrize(
    ("configured", "limit", "died", "died_at", "expected"),
    [
        (40, None, 0, None, Attempt(1, None)),  # nothing died: the first attempt, unchanged
        (40, None, 1, 40, Attempt(2, None)),  # one death may be the platform's: same size
        (40, None, 2, 40, Attempt(3, None)),
        (40, None, 3, 40, Attempt(1, 20)),  # the third death halves it, and the count restarts
        (40, 20, 3, 20, Attempt(1, 10)),
        (40, None, 3, 3, Attempt(1, 1)),  # down to one row
        (40, 1, 2, 1, Attempt(3, 1)),  # one row that killed two: a third try
        (40, 1, 3, 1, Attempt(4, 1, refuse=True)),  # one row that killed three: refused, not written
        (40, 8, 3, 40, Attempt(1, 4)),  # halved from the smaller of the size died at and the limit
        (40, None, 3, None, Attempt(4, None)),  # a record without a size (hand-edited) halves nothing
    ],
)
def test_next_attempt_after_deaths(configured, limit, died, died_at, expected):
    assert next_attempt(configured, limit, died, died_at) == expected


def test_a_killed_page_reaches_one_row_then_is_refused():
    limit, size, died, sizes = None, 2000, 0, []
    for _ in range(100):
        attempt = next_attempt(2000, limit, died, size)
        if attempt.refuse:
            break
        limit, size, died = attempt.limit, page_size(2000, attempt.limit), attempt.number
        sizes.append(size)
    else:
        raise AssertionError("never refused")
    assert sorted(set(sizes), reverse=True)[:3] == [2000, 1000, 500]
    assert sizes[-STRIKES_TO_SHRINK:] == [1] * STRIKES_TO_SHRINK  # three tries at one row, then refused
