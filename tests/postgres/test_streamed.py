"""A page Postgres holds none of is copied while it is mapped, and ends exactly as the ordinary path.

Each comparison writes the same page twice into one database, emptied in between: through
``write_page`` with the rows mapped beforehand, and through ``write_mapped``. Stored rows, links,
rejections and counts must agree. Where the shortcut has to step aside, the tests check that it
did and that it left nothing written.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from conftest import query_url

from sync.postgres.db import connect_url
from sync.postgres.sink import write_page
from sync.postgres.streamed import CHUNK_ROWS, copy_unheld, look_up, write_mapped
from sync.postgres.transaction import transaction
from sync.rows.transform import LinkRow, PageMapping, transform_page

RUN = str(uuid.UUID(int=25))
_STAMP = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def _source(i: int, **changes: Any) -> dict[str, Any]:
    """A joined source row as the BigQuery client hands it over."""
    row = {
        "id": f"006S{i:05d}",
        "name": f"Deal {i}",
        "account_id": "001A",
        "account_name": "Acme",
        "account_details": '{"id":"001A","name":"Acme"}',
        "account_found": True,
        "owner_id": "005A",
        "owner_email": f"rep{i % 7}@example.com",
        "owner_found": True,
        "owner_active": True,
        "stage_name": "Proposal",
        "amount": Decimal(f"{i}.25"),
        "close_date": dt.date(2027, 1, 1) + dt.timedelta(days=i % 90),
        "is_deleted": False,
        "last_modified": _STAMP,
        "stage_history": "[]",
        "health_score": 50.0,
    }
    return {**row, **changes}


def _mixed_page(n: int = 600) -> list[dict[str, Any]]:
    """New rows with every kind of decision in them: deleted, skipped and degraded ones."""
    page = [_source(i) for i in range(n)]
    for i in range(0, n, 50):
        page[i] = _source(i, is_deleted=True)  # deleted in the source, never stored
    page[7] = _source(7, name="   ")  # skipped: no name
    page[8] = _source(8, amount="twelve")  # degraded: amount stored as NULL
    page[9] = _source(9, account_found=False)  # degraded: account not found
    return page


def _state(url: str) -> tuple[list[Any], list[Any], list[Any]]:
    rows = query_url(
        url,
        "SELECT gong_opportunity_id, name, account_name, owner_email, stage, close_date, amount, health_score,"
        " metadata::text, deleted_at IS NOT NULL, source_modified_at, content_hash FROM opportunities ORDER BY 1",
    )
    links = query_url(
        url,
        "SELECT co.call_id, o.gong_opportunity_id FROM call_opportunities co"
        " JOIN opportunities o ON o.id = co.opportunity_id ORDER BY 1, 2",
    )
    rejections = query_url(url, "SELECT source_id, kind, reason FROM sync_rejections ORDER BY 1, 2, 3")
    return rows, links, rejections


def _empty(url: str) -> None:
    query_url(url, "TRUNCATE opportunities, call_opportunities, call_links, sync_rejections, sync_refused_rows")


def _ordinary(url: str, page: Sequence[Mapping[str, Any]], links: Sequence[LinkRow] = ()) -> Any:
    mapped = transform_page(page)
    conn = connect_url(url)
    try:
        with transaction(conn):
            return write_page(conn, mapped.rows, links, mapped.issues, RUN)
    finally:
        conn.close()


def _streamed(url: str, page: Sequence[Mapping[str, Any]], links: Sequence[LinkRow] = ()) -> Any:
    conn = connect_url(url)
    try:
        with transaction(conn):
            return write_mapped(conn, PageMapping(page), links, [], RUN)
    finally:
        conn.close()


def _copied(url: str, page: Sequence[Mapping[str, Any]]) -> Any:
    """What ``copy_unheld`` alone does with the page, rolled back afterwards."""
    conn = connect_url(url)
    try:
        mapping = PageMapping(page)
        held = look_up(conn, mapping)
        assert held is not None
        return copy_unheld(conn, mapping, held)
    finally:
        conn.rollback()
        conn.close()


def test_a_new_page_is_copied_and_ends_exactly_as_the_ordinary_path(database_url):
    page = _mixed_page()
    ordinary = _ordinary(database_url, page)
    expected = _state(database_url)
    _empty(database_url)

    assert _copied(database_url, page) is not None  # the shortcut is taken for this page
    written = _streamed(database_url, page)

    assert _state(database_url) == expected
    assert written.counts == ordinary.counts
    assert (written.counts.inserted, written.counts.not_stored) == (587, 12)


def test_links_read_before_their_opportunities_land_when_they_are_copied(database_url):
    page = _mixed_page(120)
    early = [LinkRow(f"call-{i}", f"006S{i:05d}", False, _STAMP) for i in (1, 2, 3, 50)]  # 50 is deleted

    _ordinary(database_url, [], early)
    _ordinary(database_url, page)
    expected = _state(database_url)
    _empty(database_url)
    _ordinary(database_url, [], early)
    written = _streamed(database_url, page)

    assert _state(database_url) == expected
    assert [link[0] for link in expected[1]] == ["call-1", "call-2", "call-3"]
    assert written.counts.links_added == 3


def test_links_on_the_same_page_land_and_removed_ones_are_dropped(database_url):
    page = _mixed_page(100)
    links = [LinkRow("call-a", "006S00001", False, _STAMP), LinkRow("call-b", "006S00002", True, _STAMP)]

    _ordinary(database_url, page, links)
    expected = _state(database_url)
    _empty(database_url)
    _streamed(database_url, page, links)

    assert _state(database_url) == expected == (expected[0], [("call-a", "006S00001")], expected[2])


def test_the_server_stores_rows_while_later_ones_are_still_being_mapped(database_url):
    stored_before_last: list[int] = []

    class Watched(list):  # type: ignore[type-arg]
        """Source rows that, before the last one is mapped, wait for Postgres to have stored a chunk."""

        def __getitem__(self, index: Any) -> Any:
            if index == len(self) - 1 and not stored_before_last:
                stored_before_last.append(_copy_progress(database_url, at_least=CHUNK_ROWS, within=10.0))
            return super().__getitem__(index)

    page = Watched(_source(i) for i in range(40 * CHUNK_ROWS))
    written = _streamed(database_url, page)

    assert written.counts.inserted == 40 * CHUNK_ROWS
    # Mapping everything first and copying afterwards would leave the COPY at 0 here.
    assert stored_before_last == [stored_before_last[0]]
    assert stored_before_last[0] >= CHUNK_ROWS


def _copy_progress(url: str, *, at_least: int, within: float) -> int:
    """Rows the running COPY has stored, polled until ``at_least`` or ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        done = int(query_url(url, "SELECT coalesce(max(tuples_processed), 0) FROM pg_stat_progress_copy")[0][0])
        if done >= at_least or time.monotonic() > deadline:
            return done
        time.sleep(0.01)


def test_a_page_with_one_stored_id_takes_the_ordinary_path(database_url):
    _ordinary(database_url, [_source(3, stage_name="Old")])
    page = _mixed_page(200)

    assert _copied(database_url, page) is None
    written = _streamed(database_url, page)

    assert written.counts.updated == 1
    stages = dict(query_url(database_url, "SELECT gong_opportunity_id, stage FROM opportunities"))
    assert stages["006S00003"] == "Proposal"
    assert len(stages) == 200 - 4 - 1  # 4 deleted, 1 skipped


def test_a_page_read_again_is_counted_unchanged_without_writing_or_locking_a_row(database_url):
    page = _mixed_page(300)
    _streamed(database_url, page)
    versions = query_url(database_url, "SELECT gong_opportunity_id, xmin::text, xmax::text FROM opportunities ORDER BY 1")

    again = _streamed(database_url, page)

    assert query_url(database_url, "SELECT gong_opportunity_id, xmin::text, xmax::text FROM opportunities ORDER BY 1") == versions
    # 6 rows are deleted in the source and were never stored; 1 is skipped.
    assert (again.counts.inserted, again.counts.updated, again.counts.deleted) == (0, 0, 0)
    assert (again.counts.unchanged, again.counts.not_stored) == (293, 6)
    assert again.counts == _ordinary(database_url, page).counts


def test_a_page_of_new_changed_deleted_and_unchanged_rows_ends_as_the_ordinary_path(database_url):
    before = _mixed_page(200)
    after = [
        _source(i, stage_name="Closed Won") if i % 3 == 0 else _source(i, is_deleted=True) if i % 3 == 1 else row
        for i, row in enumerate(before)
    ] + [_source(i) for i in range(200, 260)]
    _ordinary(database_url, before)
    ordinary = _ordinary(database_url, after)
    expected = _state(database_url)
    _empty(database_url)
    _ordinary(database_url, before)

    written = _streamed(database_url, after)

    assert _state(database_url) == expected
    assert written.counts == ordinary.counts
    assert written.counts.unchanged > 0
    assert written.counts.updated > 0


def test_an_id_twice_in_the_page_takes_the_ordinary_path_and_the_later_row_wins(database_url):
    page = [_source(1), _source(2, stage_name="Early"), _source(3), _source(2, stage_name="Late")]

    assert _copied(database_url, page) is None
    written = _streamed(database_url, page)

    assert written.counts.inserted == 3
    stages = dict(query_url(database_url, "SELECT gong_opportunity_id, stage FROM opportunities"))
    assert stages == {"006S00001": "Proposal", "006S00002": "Late", "006S00003": "Proposal"}


def test_a_remembered_refusal_takes_the_ordinary_path_which_recalls_it(database_url):
    victim = _source(5)
    refuse = "ALTER TABLE opportunities ADD CONSTRAINT test_refuses_one CHECK (gong_opportunity_id <> '006S00005')"
    query_url(database_url, refuse)
    _ordinary(database_url, [victim])
    query_url(database_url, "ALTER TABLE opportunities DROP CONSTRAINT test_refuses_one")
    assert query_url(database_url, "SELECT count(*) FROM sync_refused_rows") == [(1,)]
    page = [_source(i) for i in range(10)]

    assert _copied(database_url, page) is None
    written = _streamed(database_url, page)

    # Remembered: the row is refused again without being sent, though Postgres would take it now.
    assert [(i.source_id, i.values.get("remembered")) for i in written.refused] == [("006S00005", True)]
    assert query_url(database_url, "SELECT count(*) FROM opportunities") == [(9,)]


def test_a_value_postgres_refuses_rolls_the_copy_back_and_isolation_finds_the_row(database_url):
    query_url(database_url, "ALTER TABLE opportunities ADD CONSTRAINT test_refuses_one CHECK (stage <> 'Poison')")
    page = [_source(i) for i in range(40)]
    page[17] = _source(17, stage_name="Poison")

    assert _copied(database_url, page) is None  # refused, rolled back, nothing left written
    assert query_url(database_url, "SELECT count(*) FROM opportunities") == [(0,)]
    written = _streamed(database_url, page)

    assert written.counts.inserted == 40
    assert [(i.source_id, i.kind, i.values.get("nulled")) for i in written.refused] == [("006S00017", "degraded", "stage")]
    assert query_url(database_url, "SELECT stage FROM opportunities WHERE gong_opportunity_id = '006S00017'") == [(None,)]


def test_an_id_another_writer_stores_during_the_copy_is_merged_instead(database_url):
    """The other writer's insert is uncommitted at the look-up, so the COPY waits on its key and then conflicts."""
    other = connect_url(database_url)
    cur = other.cursor()
    cur.execute(
        "INSERT INTO opportunities (gong_opportunity_id, name, metadata, content_hash)"
        " VALUES ('006S00030', 'theirs', '{}', '\\x00')"
    )
    timer = threading.Timer(0.5, other.commit)
    timer.start()
    try:
        written = _streamed(database_url, [_source(i) for i in range(60)])
    finally:
        timer.join()
        other.close()

    assert (written.counts.inserted, written.counts.updated) == (59, 1)
    names = dict(query_url(database_url, "SELECT gong_opportunity_id, name FROM opportunities"))
    assert len(names) == 60
    assert names["006S00030"] == "Deal 30"
