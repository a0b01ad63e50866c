"""The delete guard's limit (pure), and migration 0008 upgrading a database that holds rows."""

from __future__ import annotations

import uuid

import pytest
from conftest import migrate_below, query_url

from sync.postgres.db import connect_url
from sync.postgres.guard import Guard, deleted_ids
from sync.postgres.schema import migrate


@pytest.mark.parametrize(
    ("guard", "live", "approved", "limit"),
    [
        (Guard(10.0, 100), 200_000, 0, 20_000),  # a tenth of the live rows
        (Guard(10.0, 100), 200, 0, 99),  # a small replica: the floor, so 99 deletes pass and 100 are held
        (Guard(10.0, 1), 200, 0, 20),  # floor lowered: a tenth again
        (Guard(10.0, 1), 205, 0, 20),  # 20.5 allowed: 21 deletes are more than the share
        (Guard(10.0, 1), 0, 0, 0),  # an empty replica: nothing to delete anyway
        (Guard(10.0, 100), 200_000, 150_000, 170_000),  # an approval adds to the ordinary allowance
        (Guard(100.0, 1), 500, 0, 500),  # 100 %: no run can delete more rows than there are
        (Guard(None, 100), 200_000, 0, None),  # off
    ],
)
def test_limit(guard, live, approved, limit):
    assert guard.limit(live, approved) == limit


def _row(row_id, *, deleted, name="n"):
    return {"id": row_id, "name": name, "is_deleted": deleted}


def test_deleted_ids_are_those_the_write_would_store_as_deleted():
    rows = [
        _row("a", deleted=True),
        _row("b", deleted=False),
        _row("c", deleted=True),
        _row("c", deleted=False),  # a later duplicate wins: c comes back
        _row("d", deleted=False),
        _row("d", deleted=True),  # and d goes
        _row("e", deleted=True, name=None),  # skipped by the transform: never stored as deleted
        _row(None, deleted=True),
    ]
    assert deleted_ids(rows) == ["a", "d"]


RUN = uuid.UUID(int=81)


def test_0008_keeps_every_row_and_starts_held_counts_at_zero(empty_database_url):
    url = empty_database_url
    migrate_below(url, 8)
    query_url(
        url,
        "INSERT INTO opportunities (gong_opportunity_id, name, content_hash, deleted_at)"
        " SELECT 'o' || g, 'n' || g, '\\x01', CASE WHEN g % 10 = 0 THEN now() END FROM generate_series(1, 500) g",
    )
    query_url(
        url, "INSERT INTO sync_runs (run_id, trigger, pages, rows_read, rows_deleted) VALUES (%s, 'tick', 3, 600, 7)", (str(RUN),)
    )
    opportunities = "SELECT gong_opportunity_id, name, deleted_at, content_hash, xmin::text FROM opportunities ORDER BY 1"
    runs = "SELECT run_id, pages, rows_read, rows_deleted, xmin::text FROM sync_runs"
    before = (query_url(url, opportunities), query_url(url, runs))

    conn = connect_url(url)
    try:
        assert 8 in migrate(conn)
    finally:
        conn.close()

    assert (query_url(url, opportunities), query_url(url, runs)) == before  # not one row rewritten
    assert query_url(url, "SELECT rows_held FROM sync_runs") == [(0,)]
    assert query_url(url, "SELECT count(*) FROM sync_delete_holds") == [(0,)]
