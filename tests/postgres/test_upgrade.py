"""Migration 0003 upgrades a database that already holds rows, in place, with a run in flight."""

from __future__ import annotations

import uuid

import pytest
from conftest import migrate_below, query_url

from sync.bigquery.cursor import Keyset
from sync.postgres.db import connect_url
from sync.postgres.schema import migrate

RUN = uuid.UUID(int=21)


@pytest.fixture
def before_0003(empty_database_url):
    """A database at the schema just before 0003."""
    migrate_below(empty_database_url, 3)
    return empty_database_url


def test_0003_keeps_every_row_and_the_run_in_flight(before_0003):
    url = before_0003
    query_url(
        url,
        "INSERT INTO opportunities (gong_opportunity_id, name, content_hash) SELECT 'o' || g, 'n', '\\x01'"
        " FROM generate_series(1, 500) g",
    )
    query_url(
        url,
        "INSERT INTO sync_runs (run_id, trigger, pages, rows_read) VALUES (%s, 'full_resync', 3, 6000)",
        (str(RUN),),
    )
    query_url(
        url,
        "UPDATE sync_status SET run_id = %s, run_trigger = 'full_resync', run_next_page = 4,"
        " run_cursor_stamp = '2026-11-01T08:00:00Z', run_cursor_id = 'o300', run_upper_bound = '2026-11-02T00:00:00Z',"
        " last_sync_timestamp = '2026-10-01T00:00:00Z', status = 'running'",
        (str(RUN),),
    )
    before = query_url(url, "SELECT id, gong_opportunity_id, content_hash, xmin::text FROM opportunities ORDER BY id")

    conn = connect_url(url)
    try:
        applied = migrate(conn)
    finally:
        conn.close()

    assert 3 in applied
    assert query_url(url, "SELECT id, gong_opportunity_id, content_hash, xmin::text FROM opportunities ORDER BY id") == before
    state = query_url(
        url,
        "SELECT run_id, run_next_page, run_cursor_id, run_job_id, run_job_offset, run_link_job_id, run_ids_complete,"
        " source_marks FROM sync_status",
    )
    # The cursor survives; no job is stored, so the run's next page evaluates again from it, and
    # it may not purge from ids it never recorded.
    assert state == [(RUN, 4, "o300", None, None, None, False, None)]
    runs = query_url(
        url, "SELECT pages, bigquery_jobs, bigquery_bytes_processed, bigquery_bytes_billed, rows_future_stamped FROM sync_runs"
    )
    assert runs == [(3, None, None, None, 0)]  # cost unknown before it was counted, not zero
    assert query_url(url, "SELECT count(*) FROM sync_run_source_ids") == [(0,)]


def test_a_run_in_flight_at_the_upgrade_carries_on_from_its_cursor(env, before_0003, caplog):
    import logging
    import time

    from projection import expected_projection

    from standins.generator import generate
    from sync.bigquery.source import StreamRead
    from sync.bigquery.streams import StreamKind
    from sync.core.messages import Message
    from sync.postgres.sink import write_page
    from sync.rows.transform import transform_page

    data = generate(120, seed=161, batch_size=10, messy=False)
    env.seed(data)
    env.database_url = before_0003
    # Two pages of a full resync as the code before 0003 left them: rows written, cursor stored
    # (the call-link stream not started yet).
    first = env.source().read(StreamRead(StreamKind.OPPORTUNITIES, Keyset.start(), None, None, 80, time.monotonic() + 60))
    conn = connect_url(before_0003)
    try:
        write_page(conn, transform_page(first.rows).rows, [], [], str(RUN))
        conn.commit()
    finally:
        conn.close()
    query_url(
        before_0003, "INSERT INTO sync_runs (run_id, trigger, pages, rows_read) VALUES (%s, 'full_resync', 2, 80)", (str(RUN),)
    )
    query_url(
        before_0003,
        "UPDATE sync_status SET run_id = %s, run_trigger = 'full_resync', run_next_page = 3, run_upper_bound = %s,"
        " run_cursor_stamp = %s, run_cursor_id = %s, status = 'running'",
        (str(RUN), first.upper_bound, first.last.stamp, first.last.key),
    )
    conn = connect_url(before_0003)
    try:
        assert 3 in migrate(conn)
    finally:
        conn.close()

    with caplog.at_level(logging.WARNING):
        outcomes = env.drain(Message.tick())  # the scheduler's next tick resumes the run

    assert {o.run_id for o in outcomes} == {RUN}
    assert sum(o.rows_read for o in outcomes) == 40  # only what the cursor had not passed
    assert env.projection() == expected_projection(data)
    pages, jobs = env.query("SELECT pages, bigquery_jobs FROM sync_runs WHERE run_id = %s", (str(RUN),))[0]
    assert pages == 2 + len(outcomes)
    assert jobs is None  # its first pages' jobs were never counted: unknown, not a wrong number
    # Its ids were not recorded from the first page, so its end must not purge from a partial list.
    assert [r.event for r in caplog.records if getattr(r, "event", None) == "purge_skipped"] == ["purge_skipped"]


def test_0006_counts_never_stored_deletions_on_their_own_and_keeps_every_run(empty_database_url):
    url = empty_database_url
    migrate_below(url, 6)
    query_url(
        url,
        "INSERT INTO sync_runs (run_id, trigger, pages, rows_read, rows_unchanged) VALUES (%s, 'tick', 2, 500, 480)",
        (str(RUN),),
    )
    before = query_url(url, "SELECT run_id, pages, rows_read, rows_unchanged, xmin::text FROM sync_runs")

    conn = connect_url(url)
    try:
        assert 6 in migrate(conn)
    finally:
        conn.close()

    assert query_url(url, "SELECT run_id, pages, rows_read, rows_unchanged, xmin::text FROM sync_runs") == before
    assert query_url(url, "SELECT rows_deleted_not_stored FROM sync_runs") == [(0,)]  # earlier runs: in rows_unchanged


def test_0015_adds_the_wakeup_state_beside_a_run_in_flight(empty_database_url):
    url = empty_database_url
    migrate_below(url, 15)
    query_url(
        url,
        "INSERT INTO opportunities (gong_opportunity_id, name, content_hash) SELECT 'o' || g, 'n', '\\x01'"
        " FROM generate_series(1, 200) g",
    )
    query_url(url, "UPDATE sync_status SET run_id = %s, run_trigger = 'tick', run_next_page = 3", (str(RUN),))
    before = query_url(url, "SELECT count(*), min(xmin::text) FROM opportunities")

    conn = connect_url(url)
    try:
        assert 15 in migrate(conn)
    finally:
        conn.close()

    assert query_url(url, "SELECT count(*), min(xmin::text) FROM opportunities") == before  # no row rewritten
    # The run in flight carries on; no run has begun under the new rules and nothing is requested.
    assert query_url(url, "SELECT run_id, run_next_page, run_begun_at FROM sync_status") == [(RUN, 3, None)]
    assert query_url(url, "SELECT requested_at, tick_published_at FROM sync_wakeups") == [(None, None)]
