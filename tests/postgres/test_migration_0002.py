"""Migration 0002 upgrades a deployed version-1 database in place: no row lost, re-keyed or rewritten."""

from __future__ import annotations

import uuid

import pytest
from conftest import migrate_below, query_url
from pg8000.exceptions import DatabaseError

from sync.postgres.db import connect_url
from sync.postgres.schema import available, current_version, migrate


@pytest.fixture
def v1_url(empty_database_url):
    """A database at schema version 1, as the first release deployed it."""
    migrate_below(empty_database_url, 2)
    return empty_database_url


def _fill(url):
    query_url(
        url,
        "INSERT INTO opportunities (gong_opportunity_id, name, owner_email, amount, content_hash)"
        " SELECT '006' || g, 'deal ' || g, 'rep@x.com', g, '\\x01' FROM generate_series(1, 500) g",
    )
    query_url(url, "INSERT INTO call_opportunities (call_id, opportunity_id) SELECT 'c' || id, id FROM opportunities")
    query_url(
        url, "INSERT INTO call_links (call_id, gong_opportunity_id) SELECT 'c' || g, '006' || g FROM generate_series(1, 500) g"
    )
    query_url(
        url,
        "INSERT INTO sync_runs (run_id, trigger, status, pages) VALUES (%s, 'full_resync', 'success', 3)",
        (str(uuid.uuid4()),),
    )
    query_url(
        url,
        "UPDATE sync_status SET status = 'success', items_synced = 500, last_resync_message_id = '1234567890123456'",
    )


def _everything(url):
    return {
        table: query_url(url, f"SELECT * FROM {table} ORDER BY 1, 2")
        for table in ("opportunities", "call_opportunities", "call_links", "sync_runs")
    }


def test_upgrades_a_database_holding_rows(v1_url):
    _fill(v1_url)
    before = _everything(v1_url)
    oids = query_url(
        v1_url,
        "SELECT relname, relfilenode FROM pg_class WHERE relname IN ('opportunities', 'sync_runs', 'sync_status') ORDER BY 1",
    )
    conn = connect_url(v1_url)
    try:
        assert 2 in migrate(conn)
        assert current_version(conn) == max(m.version for m in available())
    finally:
        conn.close()

    after = _everything(v1_url)
    for table, rows in before.items():
        # Same rows, same keys; new columns only append NULLs or their defaults.
        assert [r[: len(rows[0])] for r in after[table]] == rows, table
    assert query_url(v1_url, "SELECT smallest_page_size FROM sync_runs") == [(None,)]  # never shrunk
    # Adding nullable or defaulted columns rewrote no table.
    assert (
        query_url(
            v1_url,
            "SELECT relname, relfilenode FROM pg_class WHERE relname IN ('opportunities', 'sync_runs', 'sync_status') ORDER BY 1",
        )
        == oids
    )
    # The last remembered full_resync id carries over into the new set, and its old column goes.
    assert query_url(v1_url, "SELECT message_id FROM sync_resync_messages") == [("1234567890123456",)]
    assert query_url(
        v1_url, "SELECT count(*) FROM pg_attribute WHERE attname = 'last_resync_message_id' AND NOT attisdropped"
    ) == [(0,)]
    assert query_url(v1_url, "SELECT status, items_synced, page_size_limit FROM sync_status") == [("success", 500, None)]


def test_upgrades_a_database_that_never_ran(v1_url):
    conn = connect_url(v1_url)
    try:
        assert 2 in migrate(conn)
    finally:
        conn.close()
    assert query_url(v1_url, "SELECT count(*) FROM sync_resync_messages") == [(0,)]


def test_page_size_limit_must_be_positive(database_url):
    with pytest.raises(DatabaseError) as info:
        query_url(database_url, "UPDATE sync_status SET page_size_limit = 0")
    assert info.value.args[0]["C"] == "23514"
