"""The replica remembers the source shape it was built from (issue: the source changes under the replica).

Each scenario changes the source the way a Fivetran-fed warehouse does (a table dropped by a
connector re-sync, a permission lost, a table that appears later, the Salesforce opportunity
table vanishing beside Gong's), checks that nothing wrong is written meanwhile, and ends by
comparing the replica with a clean full sync of the final source in a second database.
"""

from __future__ import annotations

import io
import json

import pytest
from projection import expected_projection

from standins import bigquery as sbq
from standins.generator import generate
from sync.core.errors import SourceShapeError
from sync.core.messages import Message
from sync.ops import cli


def _drop(env, logical: str) -> None:
    env.bq.delete_table(env.table(logical).replace("`", ""), not_found_ok=False)


def _status(env) -> tuple[str, str | None]:
    row = env.query("SELECT status, last_error FROM sync_status")[0]
    return row[0], row[1]


def _clean_sync(env, database_url: str) -> dict:
    """A clean full sync of the source as it is now, in another database: the reference state."""
    clean = type(env)(**{**env.__dict__, "database_url": database_url, "_source": None})
    clean.drain(Message.full_resync("clean"))
    return clean.snapshot()


def test_a_joined_table_missing_for_a_while_fails_by_name_and_writes_nothing(env, empty_database_url):
    data = generate(40, seed=321, messy=False)
    env.seed(data)
    env.drain()
    before = env.snapshot()
    assert any(row[1] for row in before.values()), "the seed must give account names"

    _drop(env, "account")
    env._source = None  # a new process resolves the source while the table is gone
    for message in (Message.tick(), Message.full_resync("while-gone")):
        with pytest.raises(SourceShapeError) as raised:
            env.drain(message)
        assert "account" in str(raised.value)
        assert env.snapshot() == before  # no NULL account name stored over a good one
    status, error = _status(env)
    assert status == "failed"
    assert "account" in (error or "")

    env.seed(data)  # the table returns, unchanged: its stamps never moved
    env._source = None
    env.drain()
    assert _status(env)[0] == "success"
    assert env.snapshot() == before
    assert env.projection() == expected_projection(data)
    migrated_clean = _migrated(empty_database_url)
    assert env.snapshot() == _clean_sync(env, migrated_clean)


def test_a_table_dropped_under_a_warm_process_is_noticed_and_retried(env):
    data = generate(30, seed=322, messy=False)
    env.seed(data)
    pipeline = env.pipeline()
    outcome = pipeline.handle(Message.tick())
    assert outcome.run_done
    before = env.snapshot()
    _drop(env, "user")  # the process still holds the look-up that found it
    first = data.rows("opportunity")[0]["id"]
    env.update("opportunity", "id", first, name="Renamed while user is gone", _fivetran_synced="2026-11-20T00:00:00Z")
    with pytest.raises(SourceShapeError):
        pipeline.handle(Message.tick())
    assert env.snapshot() == before
    env.seed(data)  # restores every table; the renamed row is in ``data`` too
    pipeline.handle(Message.tick())
    assert env.projection() == expected_projection(data)


def test_the_opportunity_table_never_switches_to_gong_by_itself(env, empty_database_url):
    data = generate(30, seed=323, messy=False)
    env.seed(data)
    env.drain()
    before = env.snapshot()
    # Salesforce's opportunity table is gone; Gong's (with other values) is there.
    _drop(env, "opportunity")
    assert env.bq.get_table(f"{sbq.PROJECT}.{env.gong_dataset}.opportunity").num_rows > 0
    env._source = None
    for message in (Message.tick(), Message.full_resync("no-switch")):
        with pytest.raises(SourceShapeError) as raised:
            env.drain(message)
        assert "opportunity" in str(raised.value)
    assert env.snapshot() == before  # nothing overwritten, nothing purged

    env.seed(data)
    env._source = None
    env.drain()
    assert env.snapshot() == _clean_sync(env, _migrated(empty_database_url))


def test_a_feature_whose_table_appears_later_rereads_every_row(env, empty_database_url):
    data = generate(40, seed=324, messy=False)
    env.seed(data, skip_tables=["user"])
    env.drain()
    assert all(row[2] is None for row in env.snapshot().values())  # no owner emails yet

    env.seed(data)  # the user table appears; no opportunity stamp moved
    env._source = None
    env.drain()
    after = env.snapshot()
    assert any(row[2] for row in after.values())
    assert env.projection() == expected_projection(data)
    assert after == _clean_sync(env, _migrated(empty_database_url))
    taken = env.query("SELECT kind, reason, run_id IS NOT NULL FROM sync_requests")
    assert taken == [("reread", "feature turned on: owner_emails", True)]


def test_switching_to_gong_is_an_operator_command_and_a_full_resync(env):
    data = generate(20, seed=325, messy=False)
    env.seed(data)
    env.drain()
    # A Gong opportunity table that can stand for Salesforce's, with its own names.
    gong = f"{sbq.PROJECT}.{env.gong_dataset}.opportunity"
    env.bq.delete_table(gong)
    env.execute(
        f"CREATE TABLE `{gong}` AS SELECT id, CONCAT('Gong: ', name) AS name, stage_name, amount, close_date, is_deleted,"
        f" 50.0 AS health_score, _fivetran_synced FROM {env.table('opportunity')}"
    )
    env._source = None
    env.drain()  # a tick alone never switches
    assert not any(row[0].startswith("Gong: ") for row in env.snapshot().values())

    out = io.StringIO()
    assert cli.main(["source", "--switch", "gong", "--json"], env.env_vars(), out) == 0
    shown = json.loads(out.getvalue())
    assert shown["next_run"] == "full resync"
    assert shown["recorded"]["opportunity_table"] == "gong"
    env._source = None
    env.drain()
    assert env.query("SELECT trigger FROM sync_runs ORDER BY started_at DESC LIMIT 1") == [("full_resync",)]
    assert env.query("SELECT shape->>'opportunity_table' FROM source_shape") == [("gong",)]
    live = env.projection()
    assert live
    assert all(row[0].startswith("Gong: ") for row in live.values())
    assert env.query("SELECT count(*) FROM sync_requests WHERE run_id IS NULL") == [(0,)]


def test_an_upgraded_replica_records_its_shape_from_what_it_holds(env):
    data = generate(30, seed=326, messy=False)
    env.seed(data)
    env.drain()
    before = env.snapshot()
    # As the previous release left it: rows, no recorded shape.
    env.query("DELETE FROM source_shape RETURNING 1")
    env.seed(data, skip_tables=["account"])
    env._source = None
    with pytest.raises(SourceShapeError) as raised:
        env.drain()
    assert "account" in str(raised.value)
    assert "account names" in str(raised.value)
    assert env.snapshot() == before
    assert env.query("SELECT count(*) FROM source_shape") == [(0,)]
    env.seed(data)
    env._source = None
    env.drain()
    assert env.query("SELECT recorded_by, shape->'features'->>'account_names' FROM source_shape") == [("upgrade", "true")]
    assert env.snapshot() == before


def test_status_shows_the_recorded_shape(env):
    env.seed(generate(10, seed=327, messy=False), skip_tables=["opportunity_history"])
    env.drain()
    out = io.StringIO()
    assert cli.main(["status", "--json"], env.env_vars(), out) == 0
    shape = json.loads(out.getvalue())["source_shape"]["shape"]
    assert shape["features"]["stage_history"] is False
    assert shape["features"]["account_names"] is True
    out = io.StringIO()
    assert cli.main(["status"], env.env_vars(), out) == 0
    assert "source built from" in out.getvalue()


def _migrated(url: str) -> str:
    from sync.postgres.db import connect_url
    from sync.postgres.schema import migrate

    conn = connect_url(url)
    try:
        migrate(conn)
    finally:
        conn.close()
    return url
