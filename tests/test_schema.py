"""The Postgres schema: migrations, constraints, indexes the app's filters really use."""

from __future__ import annotations

import pytest
from conftest import query_url
from pg8000.exceptions import DatabaseError

from sync import stored
from sync.db import connect_url
from sync.schema import available, current_version, migrate

_q = query_url


def test_migrations_are_idempotent(database_url):
    conn = connect_url(database_url)
    try:
        assert migrate(conn) == []  # the fixture already applied everything
        assert current_version(conn) == max(m.version for m in available())
    finally:
        conn.close()
    assert _q(database_url, "SELECT entity_type, status FROM sync_status") == [("opportunities", "never_run")]


def test_the_stored_row_declaration_matches_the_migrated_table(database_url):
    actual = dict(
        _q(
            database_url,
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'opportunities'::regclass AND attnum > 0 AND NOT attisdropped",
        )
    )
    declared = {c.name: c.pg_type for c in stored.COLUMNS}
    assert {name: actual.get(name) for name in declared} == declared  # every declared column, with its type
    # and nothing the sync should write is left undeclared
    assert set(actual) - set(declared) == set(stored.DATABASE_OWNED)


def test_exactly_the_specified_indexes(database_url):
    rows = _q(
        database_url,
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'opportunities' AND indexname LIKE 'idx_%' ORDER BY 1",
    )
    assert [r[0] for r in rows] == ["idx_opportunities_health", "idx_opportunities_owner", "idx_opportunities_stage"]
    defs = {r[0]: r[1] for r in rows}
    assert "(owner_email, updated_at DESC)" in defs["idx_opportunities_owner"]
    assert "(stage, close_date)" in defs["idx_opportunities_stage"]
    assert "(health_score) WHERE (health_score IS NOT NULL)" in defs["idx_opportunities_health"]


def _fill(url, n=20000):
    _q(
        url,
        "INSERT INTO opportunities (gong_opportunity_id, name, owner_email, stage, close_date, health_score, content_hash)"
        " SELECT 'o' || g, 'n' || g, 'rep' || (g %% 500) || '@x.com', 'stage' || (g %% 40),"
        " date '2026-01-01' + (g %% 365), CASE WHEN g %% 3 = 0 THEN NULL ELSE (g %% 10000) / 100.0 END, '\\x00'"
        " FROM generate_series(1, %s) g",
        (n,),
    )
    _q(url, "ANALYZE opportunities")


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (
            "SELECT * FROM active_opportunities WHERE owner_email = 'rep7@x.com' ORDER BY updated_at DESC LIMIT 50",
            "idx_opportunities_owner",
        ),
        (
            "SELECT * FROM active_opportunities WHERE stage = 'stage3' AND close_date BETWEEN '2026-03-01' AND '2026-03-31'",
            "idx_opportunities_stage",
        ),
        ("SELECT * FROM active_opportunities WHERE health_score >= 99.5 ORDER BY health_score DESC", "idx_opportunities_health"),
    ],
)
def test_each_app_filter_uses_its_index(database_url, query, index):
    _fill(database_url)
    plan = "\n".join(r[0] for r in _q(database_url, "EXPLAIN " + query))
    assert index in plan, plan


def test_call_links_cannot_duplicate_and_cascade(database_url):
    _q(database_url, "INSERT INTO opportunities (gong_opportunity_id, name, content_hash) VALUES ('o1', 'n', '\\x00')")
    _q(database_url, "INSERT INTO call_opportunities (call_id, opportunity_id) SELECT 'c1', id FROM opportunities")
    with pytest.raises(DatabaseError) as info:
        _q(database_url, "INSERT INTO call_opportunities (call_id, opportunity_id) SELECT 'c1', id FROM opportunities")
    assert info.value.args[0]["C"] == "23505"
    _q(database_url, "DELETE FROM opportunities")
    assert _q(database_url, "SELECT count(*) FROM call_opportunities") == [(0,)]


@pytest.mark.parametrize("score", [-1, 100.01])
def test_health_score_is_checked(database_url, score):
    with pytest.raises(DatabaseError) as info:
        _q(
            database_url,
            "INSERT INTO opportunities (gong_opportunity_id, name, health_score, content_hash) VALUES ('o', 'n', %s, '\\x00')",
            (score,),
        )
    assert info.value.args[0]["C"] == "23514"


def test_view_shows_live_rows_with_the_display_score(database_url):
    _q(
        database_url,
        "INSERT INTO opportunities (gong_opportunity_id, name, health_score, content_hash, deleted_at) VALUES"
        " ('live', 'n', 87.5, '\\x00', NULL), ('gone', 'n', 50, '\\x00', now())",
    )
    assert [
        (r[0], str(r[1])) for r in _q(database_url, "SELECT gong_opportunity_id, health_score_display FROM active_opportunities")
    ] == [("live", "8.8")]
