"""Page size after a timeout and after commits: halve to a floor, double back, record the smallest."""

from __future__ import annotations

import pytest

from sync.pacing import MIN_PAGE_SIZE, after_commit, after_timeout, page_size, shrunk


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
        (2000, 19, MIN_PAGE_SIZE),  # never below the floor
        (2000, MIN_PAGE_SIZE, MIN_PAGE_SIZE),  # at the floor it stays
        (4, None, 4),  # a configured size below the floor is not raised to it
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
    assert commits == 8  # 10 -> 20 -> ... -> 1280 -> gone: back to full size within a few pages
