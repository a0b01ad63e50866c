"""The Postgres schema: migrations, constraints, indexes the app's filters really use."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import DATA_ONLY_GRANTS, database_role, query_url
from pg8000.exceptions import DatabaseError

from sync.core.errors import PermanentError, classify
from sync.postgres.db import connect_url
from sync.postgres.schema import MigrationPermissionError, available, current_version, migrate, upgrade
from sync.rows import stored
from sync.rows.stored import Role

ROOT = Path(__file__).resolve().parents[2]

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


def test_columns_the_sync_may_null_are_nullable_in_the_table(database_url):
    not_null = {
        r[0]
        for r in _q(database_url, "SELECT attname FROM pg_attribute WHERE attrelid = 'opportunities'::regclass AND attnotnull")
    }
    data = [c for c in stored.COLUMNS if c.role is Role.DATA]
    # A refused value may only be replaced by NULL where the table allows it, and every data
    # column the table allows NULL in is offered (metadata is NOT NULL DEFAULT '{}').
    assert {c.name for c in stored.NULLABLE} == {c.name for c in data if c.name not in not_null}


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


# Each process connects first, then waits for the same instant: the migrations really overlap.
_MIGRATE_AT = """
import sys, time
from sync.postgres.db import connect_url
from sync.postgres.schema import migrate
conn = connect_url(sys.argv[1])
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
print(migrate(conn))
"""


def test_concurrent_first_migrations_all_succeed(empty_database_url):
    start = time.time() + 4  # time for six interpreters to import and connect on a busy machine
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE_AT, empty_database_url, str(start)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert [r[0] for r in results] == [0] * 6, [r[2][-500:] for r in results if r[0]]
    applied = [eval(r[1].strip()) for r in results]  # noqa: S307 - our own child prints a list of ints
    versions = [m.version for m in available()]
    assert sorted(v for a in applied for v in a) == versions  # each version applied by exactly one process
    assert _q(empty_database_url, "SELECT version FROM schema_migrations ORDER BY 1") == [(v,) for v in versions]
    assert _q(empty_database_url, "SELECT entity_type, status FROM sync_status") == [("opportunities", "never_run")]


@dataclass
class RecordingConnection:
    """A real connection that remembers every statement sent through it."""

    conn: object
    statements: list[str] = field(default_factory=list)

    def cursor(self):
        recorder, cur = self, self.conn.cursor()

        class Cursor:
            def __getattr__(self, name):
                return getattr(cur, name)

            def execute(self, sql, *args, **kwargs):
                recorder.statements.append(sql)
                return cur.execute(sql, *args, **kwargs)

        return Cursor()

    def __getattr__(self, name):
        return getattr(self.conn, name)


def test_up_to_date_schema_costs_one_read_and_no_ddl(database_url):
    conn = RecordingConnection(connect_url(database_url))
    try:
        assert upgrade(conn).applied == []
    finally:
        conn.close()
    assert len(conn.statements) == 1
    assert conn.statements[0].lstrip().upper().startswith("SELECT")


def test_data_only_role_migrates_an_up_to_date_schema_without_42501(database_url):
    # An admin created the tables (the fixture migrated as postgres); this role may only use them.
    with database_role(database_url, DATA_ONLY_GRANTS) as role_url:
        conn = connect_url(role_url)
        try:
            with pytest.raises(DatabaseError) as denied:  # the role really cannot run DDL here
                conn.cursor().execute("CREATE TABLE IF NOT EXISTS schema_migrations (version integer)")
            assert denied.value.args[0]["C"] == "42501"
            conn.rollback()
            assert migrate(conn) == []
        finally:
            conn.close()


def test_permission_error_on_a_pending_migration_says_what_to_do(empty_database_url):
    with database_role(empty_database_url) as role_url:
        role = role_url.split("//")[1].split("@")[0]
        conn = connect_url(role_url)
        try:
            with pytest.raises(MigrationPermissionError) as info:
                migrate(conn)
        finally:
            conn.close()
    message = str(info.value)
    assert f"role '{role}' cannot apply migration 0001_schema: permission denied for schema public" in message
    assert f'GRANT USAGE, CREATE ON SCHEMA public TO "{role}";' in message
    assert "SYNC_AUTO_MIGRATE=false" in message
    assert info.value.role == role
    assert isinstance(classify(info.value), PermanentError)


def test_missing_status_row_is_restored_by_migrate(database_url):
    _q(database_url, "UPDATE sync_status SET last_sync_timestamp = now(), status = 'success'")
    _q(database_url, "DELETE FROM sync_status")
    conn = connect_url(database_url)
    try:
        first = upgrade(conn)
        second = upgrade(conn)
    finally:
        conn.close()
    assert (first.applied, first.restored_status_row) == ([], True)
    assert (second.applied, second.restored_status_row) == ([], False)
    assert _q(database_url, "SELECT entity_type, status, last_sync_timestamp FROM sync_status") == [
        ("opportunities", "never_run", None)
    ]
