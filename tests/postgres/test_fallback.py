"""The generic fallback alone handles every listed repro: rows built without the transform's checks.

``sync/rows/limits.py`` stops these values in the transform; here they reach ``writer.write_page`` as
they would if a check were missing, and bisection under savepoints must find each one, repair
or skip it, write the rest, record it and remember it.
"""

from __future__ import annotations

import hashlib
import math
import uuid

import pytest
from conftest import query_url
from poison import random_text

from sync.core.errors import TimeBudgetError
from sync.postgres.db import connect_url
from sync.postgres.transaction import transaction
from sync.postgres.writer import write_page
from sync.rows import parse, stored
from sync.rows.stored import OpportunityRow
from sync.rows.transform import LinkRow, PageMapping

RUN = str(uuid.UUID(int=9))
LONG_ID = "006" + random_text(2997, seed=11)
LONG_CALL = "call-" + random_text(2995, seed=12)


def _row(source_id: str, **values) -> OpportunityRow:
    """A stored row as the transform would build it, minus its checks."""
    base = {c.name: None for c in stored.PARSED} | {"name": f"deal {source_id[:10]}", "metadata": "{}", "deleted_at": False}
    ordered = [{**base, "gong_opportunity_id": source_id, **values}[c.name] for c in stored.PARSED]
    content = stored.content_text(ordered)
    return OpportunityRow(tuple(ordered), content, hashlib.blake2b(content.encode(), digest_size=16).digest())


def _page():
    good = [_row(f"006GOOD{i:03d}", stage="Proposal", owner_email=f"rep{i}@x.com") for i in range(30)]
    poison = [
        _row("006AMOUNT", amount=parse.amount("9999999999999999.995")),  # 22003 while staging
        _row(LONG_ID),  # 54000 in the unique index: the id cannot be NULL, so the row is skipped
        _row("006OWNER", owner_email=random_text(5000, seed=13)),  # 54000 in idx_opportunities_owner
        _row("006STAGE", stage=random_text(5000, seed=14)),  # 54000 in idx_opportunities_stage
    ]
    rows = good[:10] + poison[:2] + good[10:20] + poison[2:] + good[20:]
    links = [LinkRow(f"call-{i}", f"006GOOD{i:03d}", False, None) for i in range(8)]
    links.insert(3, LinkRow(LONG_CALL, "006GOOD001", False, None))  # 54000 on the link staging key
    return rows, links


def _write(url, rows, links, deadline=math.inf):
    conn = connect_url(url)
    try:
        with transaction(conn):
            return write_page(conn, PageMapping.of(rows), links, [], RUN, deadline=deadline)
    finally:
        conn.close()


def test_bisection_finds_every_listed_repro_and_writes_the_rest(database_url):
    rows, links = _page()
    written = _write(database_url, rows, links)

    stored_rows = {
        r[0]: r[1:] for r in query_url(database_url, "SELECT gong_opportunity_id, amount, owner_email, stage FROM opportunities")
    }
    assert set(stored_rows) == {f"006GOOD{i:03d}" for i in range(30)} | {"006AMOUNT", "006OWNER", "006STAGE"}
    assert stored_rows["006AMOUNT"][0] is None
    assert stored_rows["006OWNER"][1] is None
    assert stored_rows["006STAGE"][2] is None
    assert stored_rows["006GOOD004"] == (None, "rep4@x.com", "Proposal")  # good rows untouched
    assert {r[0] for r in query_url(database_url, "SELECT call_id FROM call_opportunities")} == {f"call-{i}" for i in range(8)}

    refused = {(i.source_id[:20], i.kind, i.values.get("sqlstate"), i.values.get("nulled")) for i in written.refused}
    assert refused == {
        ("006AMOUNT", "degraded", "22003", "amount"),
        (LONG_ID[:20], "skipped", "54000", None),
        ("006OWNER", "degraded", "54000", "owner_email"),
        ("006STAGE", "degraded", "54000", "stage"),
        ("006GOOD001", "skipped", "54000", None),  # the link
    }
    assert written.counts.inserted == 33
    assert written.counts.links_added == 8
    recorded = query_url(
        database_url, "SELECT count(*), max(length(source_id)), max(length(field_values::text)) FROM sync_rejections"
    )
    assert recorded[0][0] == 5
    assert recorded[0][1] < 120  # excerpts, not 3,000-character ids
    assert recorded[0][2] < 400  # or 5 KB values
    assert query_url(database_url, "SELECT count(*) FROM sync_refused_rows") == [(5,)]


def test_a_page_read_again_is_not_sent_to_postgres_again(database_url):
    rows, links = _page()
    first = _write(database_url, rows, links)
    assert first.attempts > 10  # the first time, bisection did the work
    again = _write(database_url, rows, links)
    assert again.attempts == 1  # the second time, one clean write: nothing refused was sent
    assert (again.counts.inserted, again.counts.updated) == (0, 0)
    assert len(again.refused) == 5
    assert all(i.values.get("remembered") for i in again.refused)
    assert {(i.source_id[:20], i.kind) for i in again.refused} == {(i.source_id[:20], i.kind) for i in first.refused}
    assert query_url(database_url, "SELECT count(*), count(amount), count(owner_email), count(stage) FROM opportunities") == [
        (33, 0, 30, 30)  # only the 30 good rows hold an owner email and a stage
    ]


def test_isolation_that_runs_out_of_time_raises_and_writes_nothing(database_url):
    rows, links = _page()
    conn = connect_url(database_url)
    try:
        with pytest.raises(TimeBudgetError), transaction(conn):
            write_page(conn, PageMapping.of(rows), links, [], RUN, deadline=-1)
    finally:
        conn.close()
    assert query_url(database_url, "SELECT count(*) FROM opportunities") == [(0,)]


def test_a_refusal_remembered_before_0010_without_an_id_is_still_recalled(database_url):
    rows, links = _page()
    first = _write(database_url, rows, links)
    # Before migration 0010 a refusal was remembered by its content digest alone.
    query_url(database_url, "UPDATE sync_refused_rows SET source_id = NULL")
    again = _write(database_url, rows, links)
    assert again.attempts == 1
    assert {(i.source_id[:20], i.kind) for i in again.refused} == {(i.source_id[:20], i.kind) for i in first.refused}
    assert all(i.values.get("remembered") for i in again.refused)
