"""The page writer's table of page kinds: each is sorted once, written, and ends as its counts say.

Every kind is written twice into one database, emptied in between: mapped beforehand
(``PageMapping.of``) and mapped as the write pulls the rows. Stored rows, links, rejections and
counts must agree, and match the kind's expected counts. Separate tests pin what no table row
shows: new rows are stored while later ones are still mapped, an unchanged re-read touches no
tuple, a refused value is isolated, and a row another writer stores meanwhile is merged.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from conftest import query_url

from sync.postgres.db import connect_url
from sync.postgres.transaction import transaction
from sync.postgres.writer import CHUNK_ROWS, PageWrite, write_page
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


def _write(url: str, mapping: PageMapping, links: Sequence[LinkRow] = ()) -> PageWrite:
    conn = connect_url(url)
    try:
        with transaction(conn):
            return write_page(conn, mapping, links, [], RUN)
    finally:
        conn.close()


def _mapped_first(url: str, page: Sequence[Mapping[str, Any]], links: Sequence[LinkRow] = ()) -> PageWrite:
    mapped = transform_page(page)
    return _write(url, PageMapping.of(mapped.rows, mapped.issues), links)


def _pulled(url: str, page: Sequence[Mapping[str, Any]], links: Sequence[LinkRow] = ()) -> PageWrite:
    return _write(url, PageMapping(page), links)


def _early_links() -> list[LinkRow]:
    return [LinkRow(f"call-{i}", f"006S{i:05d}", False, _STAMP) for i in (1, 2, 3, 50)]  # 50 is deleted


def _changed_page() -> list[dict[str, Any]]:
    before = _mixed_page(200)
    return [
        _source(i, stage_name="Closed Won") if i % 3 == 0 else _source(i, is_deleted=True) if i % 3 == 1 else row
        for i, row in enumerate(before)
    ] + [_source(i) for i in range(200, 260)]


@dataclass(frozen=True)
class Kind:
    """A page kind: what Postgres holds before, the page, and what its write must count."""

    before: Callable[[str], Any]
    page: list[dict[str, Any]]
    counts: dict[str, int]
    links: list[LinkRow] = field(default_factory=list)
    stored_links: list[tuple[str, str]] | None = None
    stages: dict[str, str] | None = None


def _nothing(_url: str) -> None:
    pass


KINDS = {
    # Postgres holds none of it: every live row new, every deleted one never stored.
    "new": Kind(_nothing, _mixed_page(), {"inserted": 587, "not_stored": 12, "updated": 0, "unchanged": 0}),
    # Links read on an earlier page land once their opportunities exist (not the deleted one's).
    "new, links waiting": Kind(
        lambda url: _pulled(url, [], _early_links()),
        _mixed_page(120),
        {"links_added": 3},
        stored_links=[("call-1", "006S00001"), ("call-2", "006S00002"), ("call-3", "006S00003")],
    ),
    # Links on the same page land; a link removed in Gong is not stored.
    "new, links on the page": Kind(
        _nothing,
        _mixed_page(100),
        {"links_added": 1},
        links=[LinkRow("call-a", "006S00001", False, _STAMP), LinkRow("call-b", "006S00002", True, _STAMP)],
        stored_links=[("call-a", "006S00001")],
    ),
    # One id stored with other content: updated; the rest new (4 deleted, 1 skipped).
    "one stored id": Kind(
        lambda url: _pulled(url, [_source(3, stage_name="Old")]),
        _mixed_page(200),
        {"updated": 1, "inserted": 200 - 4 - 1 - 1},
        stages={"006S00003": "Proposal"},
    ),
    # Read again: every row unchanged (6 deleted, never stored; 1 skipped).
    "read again": Kind(
        lambda url: _pulled(url, _mixed_page(300)),
        _mixed_page(300),
        {"inserted": 0, "updated": 0, "deleted": 0, "unchanged": 293, "not_stored": 6},
    ),
    # New, changed, deleted and unchanged rows in one page: every third row changes its stage
    # (two of them were deleted and never stored: new), every third is deleted (one never
    # stored, one skipped before: not stored), the rest are unchanged (one deleted, never
    # stored), and 60 rows are new.
    "mixed": Kind(
        lambda url: _pulled(url, _mixed_page(200)),
        _changed_page(),
        {"inserted": 62, "updated": 65, "deleted": 65, "unchanged": 65, "not_stored": 3},
    ),
    # An id twice: the later row wins.
    "id twice": Kind(
        _nothing,
        [_source(1), _source(2, stage_name="Early"), _source(3), _source(2, stage_name="Late")],
        {"inserted": 3},
        stages={"006S00001": "Proposal", "006S00002": "Late", "006S00003": "Proposal"},
    ),
}


@pytest.mark.parametrize("name", list(KINDS))
def test_each_page_kind_is_counted_and_ends_as_the_same_page_mapped_beforehand(database_url, name):
    kind = KINDS[name]
    kind.before(database_url)
    first = _mapped_first(database_url, kind.page, kind.links)
    expected = _state(database_url)
    _empty(database_url)
    kind.before(database_url)

    written = _pulled(database_url, kind.page, kind.links)

    assert _state(database_url) == expected
    assert written.counts == first.counts
    assert {k: getattr(written.counts, k) for k in kind.counts} == kind.counts
    if kind.stored_links is not None:
        assert [tuple(link) for link in expected[1]] == kind.stored_links
    if kind.stages is not None:
        stages = dict(query_url(database_url, "SELECT gong_opportunity_id, stage FROM opportunities"))
        assert {k: stages[k] for k in kind.stages} == kind.stages


def _stored_before_last_mapped(url: str, page: list[dict[str, Any]], within: float) -> int:
    """Rows the write's COPY had stored when the page's last row came to be mapped."""
    seen: list[int] = []

    class Watched(list):  # type: ignore[type-arg]
        """Source rows that, before the last one is mapped, wait for Postgres to have stored a chunk."""

        def __getitem__(self, index: Any) -> Any:
            if index == len(self) - 1 and not seen:
                seen.append(_copy_progress(url, at_least=CHUNK_ROWS, within=within))
            return super().__getitem__(index)

    written = _pulled(url, Watched(page))
    assert seen == [seen[0]]
    assert written.counts.inserted + written.counts.updated == len({row["id"] for row in page})
    return seen[0]


def test_the_server_stores_new_rows_while_later_ones_are_still_being_mapped(database_url):
    stored = _stored_before_last_mapped(database_url, [_source(i) for i in range(40 * CHUNK_ROWS)], within=10.0)

    # Mapping everything first and copying afterwards would leave the COPY at 0 here.
    assert stored >= CHUNK_ROWS


def test_a_page_holding_a_stored_id_streams_its_new_rows_too(database_url):
    held = 40 * CHUNK_ROWS
    _pulled(database_url, [_source(held, stage_name="Old")])
    page = [_source(held)] + [_source(i) for i in range(40 * CHUNK_ROWS)]

    assert _stored_before_last_mapped(database_url, page, within=10.0) >= CHUNK_ROWS


def test_a_page_with_an_id_twice_is_mapped_whole_before_anything_is_copied(database_url):
    page = [_source(i) for i in range(4 * CHUNK_ROWS)] + [_source(0, stage_name="Late")]

    # The COPY has not started when the last row is mapped; there is nothing to wait for.
    assert _stored_before_last_mapped(database_url, page, within=0.5) == 0


def _copy_progress(url: str, *, at_least: int, within: float) -> int:
    """Rows the running COPY has stored, polled until ``at_least`` or ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        done = int(query_url(url, "SELECT coalesce(max(tuples_processed), 0) FROM pg_stat_progress_copy")[0][0])
        if done >= at_least or time.monotonic() > deadline:
            return done
        time.sleep(0.01)


def test_a_page_read_again_is_counted_unchanged_without_writing_or_locking_a_row(database_url):
    page = _mixed_page(300)
    _pulled(database_url, page)
    versions = query_url(database_url, "SELECT gong_opportunity_id, xmin::text, xmax::text FROM opportunities ORDER BY 1")

    again = _pulled(database_url, page)

    assert query_url(database_url, "SELECT gong_opportunity_id, xmin::text, xmax::text FROM opportunities ORDER BY 1") == versions
    # 6 rows are deleted in the source and were never stored; 1 is skipped.
    assert (again.counts.inserted, again.counts.updated, again.counts.deleted) == (0, 0, 0)
    assert (again.counts.unchanged, again.counts.not_stored) == (293, 6)
    assert again.counts == _mapped_first(database_url, page).counts


def test_a_remembered_refusal_is_recalled_without_sending_the_row(database_url):
    victim = _source(5)
    refuse = "ALTER TABLE opportunities ADD CONSTRAINT test_refuses_one CHECK (gong_opportunity_id <> '006S00005')"
    query_url(database_url, refuse)
    _mapped_first(database_url, [victim])
    query_url(database_url, "ALTER TABLE opportunities DROP CONSTRAINT test_refuses_one")
    assert query_url(database_url, "SELECT count(*) FROM sync_refused_rows") == [(1,)]
    page = [_source(i) for i in range(10)]

    written = _pulled(database_url, page)

    # Remembered: the row is refused again without being sent, though Postgres would take it now.
    assert [(i.source_id, i.values.get("remembered")) for i in written.refused] == [("006S00005", True)]
    assert written.attempts == 1
    assert query_url(database_url, "SELECT count(*) FROM opportunities") == [(9,)]


def test_a_value_postgres_refuses_rolls_the_copy_back_and_isolation_finds_the_row(database_url):
    query_url(database_url, "ALTER TABLE opportunities ADD CONSTRAINT test_refuses_one CHECK (stage <> 'Poison')")
    page = [_source(i) for i in range(40)]
    page[17] = _source(17, stage_name="Poison")

    written = _pulled(database_url, page)

    assert written.attempts > 2  # the COPY, the whole page merged, then bisection
    assert written.counts.inserted == 40
    assert query_url(database_url, "SELECT count(*) FROM opportunities") == [(40,)]  # the COPY left nothing behind
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
        written = _pulled(database_url, [_source(i) for i in range(60)])
    finally:
        timer.join()
        other.close()

    assert (written.counts.inserted, written.counts.updated) == (59, 1)
    assert written.refused == []
    names = dict(query_url(database_url, "SELECT gong_opportunity_id, name FROM opportunities"))
    assert len(names) == 60
    assert names["006S00030"] == "Deal 30"
