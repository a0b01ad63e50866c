"""The full resync's purge: ids recorded page by page, then one anti-join, against a real PostgreSQL."""

from __future__ import annotations

import logging
import uuid

from conftest import query_url

from sync.postgres import purge
from sync.postgres.db import connect_url

RUN = uuid.UUID(int=11)
OTHER = uuid.UUID(int=12)


def _seed(url, ids):
    query_url(
        url,
        "INSERT INTO opportunities (gong_opportunity_id, name, content_hash)"
        " SELECT i, 'n-' || i, '\\x01' FROM unnest(%s::text[]) i",
        (ids,),
    )
    query_url(
        url,
        "INSERT INTO call_opportunities (call_id, opportunity_id) SELECT 'call-' || gong_opportunity_id, id FROM opportunities",
    )


def _in_transaction(url, *steps):
    conn = connect_url(url)
    try:
        results = [step(conn) for step in steps]
        conn.commit()
        return results
    finally:
        conn.close()


def test_unseen_ids_are_soft_deleted_with_their_links(database_url):
    _seed(database_url, ["a", "b", "c", "d"])
    query_url(database_url, "UPDATE opportunities SET deleted_at = now() WHERE gong_opportunity_id = 'd'")
    # Two pages, one repeating an id (a page re-read after a re-evaluation), and a stale run's ids.
    _in_transaction(database_url, lambda c: purge.record(c, RUN, iter(["a", "b"])))
    _in_transaction(database_url, lambda c: purge.record(c, RUN, iter(["b"])), lambda c: purge.record(c, OTHER, ["c"]))

    (result,) = _in_transaction(database_url, lambda c: purge.purge(c, RUN))

    assert result == purge.Purged(rows=1, links=1)  # c only: d was already deleted
    rows = query_url(
        database_url, "SELECT gong_opportunity_id, deleted_at IS NOT NULL, content_hash FROM opportunities ORDER BY 1"
    )
    assert [(r[0], r[1]) for r in rows] == [("a", False), ("b", False), ("c", True), ("d", True)]
    assert bytes(rows[2][2]) == b"\x00"  # a row that comes back unchanged still counts as a change
    assert query_url(database_url, "SELECT call_id FROM call_opportunities ORDER BY 1") == [
        ("call-a",),
        ("call-b",),
        ("call-d",),
    ]


def test_an_empty_source_purges_nothing(database_url, caplog):
    _seed(database_url, ["a", "b"])
    _in_transaction(database_url, lambda c: purge.record(c, OTHER, ["a"]))  # another run's ids do not count
    with caplog.at_level(logging.ERROR, logger="sync.postgres.purge"):
        (result,) = _in_transaction(database_url, lambda c: purge.purge(c, RUN))
    assert result is None
    assert query_url(database_url, "SELECT count(*) FROM opportunities WHERE deleted_at IS NULL") == [(2,)]
    assert [r.event for r in caplog.records] == ["purge_skipped"]


def test_ids_are_recorded_with_the_page_and_forgotten_at_once(database_url):
    conn = connect_url(database_url)
    try:
        purge.record(conn, RUN, purge.source_ids([{"id": "x"}, {"id": None}, {"id": 42}]))
        conn.rollback()  # the page failed: its ids go with it
        assert query_url(database_url, "SELECT count(*) FROM sync_run_source_ids") == [(0,)]
        purge.record(conn, RUN, purge.source_ids([{"id": "x"}, {"id": None}, {"id": 42}]))
        conn.commit()
        assert query_url(database_url, "SELECT source_id FROM sync_run_source_ids ORDER BY 1") == [("42",), ("x",)]
        purge.forget(conn)
        conn.commit()
        assert query_url(database_url, "SELECT count(*) FROM sync_run_source_ids") == [(0,)]
    finally:
        conn.close()
