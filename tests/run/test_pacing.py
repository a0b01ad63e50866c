"""Page size after a timeout, after deaths and after commits: halve to one row, double back, record the smallest."""

from __future__ import annotations

import pytest

from sync.run.pacing import (
    DEATHS_BEFORE_SHRINK,
    MIN_PAGE_SIZE,
    Attempt,
    after_commit,
    after_timeout,
    next_attempt,
    page_size,
    shrunk,
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


@pytest.mark.parametrize(
    ("configured", "limit", "expected"),
    [
        (2000, None, 1000),  # first timeout: half
        (2000, 1000, 500),  # again: half again
        (2000, 3, MIN_PAGE_SIZE),  # down to one row, so a slow row ends up alone
        (2000, MIN_PAGE_SIZE, MIN_PAGE_SIZE),  # at one row it stays
        (1, None, 1),  # a configured size of one row stays one row
    ],
)
def test_after_timeout_halves_to_a_floor(configured, limit, expected):
    assert after_timeout(configured, limit) == expected


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
    limit = None
    for _ in range(20):
        limit = after_timeout(2000, limit)
    assert limit == MIN_PAGE_SIZE
    commits = 0
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
    assert sizes[-DEATHS_BEFORE_SHRINK:] == [1] * DEATHS_BEFORE_SHRINK  # three tries at one row, then refused
