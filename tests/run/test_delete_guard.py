"""Deletes are guarded: a run that would soft-delete too much of the replica holds those deletes.

Each scenario runs the real pipeline against the BigQuery emulator and a real Postgres, and ends by
comparing the replica with an independent projection of the final source and with a clean full
sync of it into an empty database.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import uuid
from collections.abc import Iterator

import pytest
from conftest import Env
from projection import expected_projection

from standins.generator import BASE_TIME, generate, to_history_mode
from sync.core import logs
from sync.core.messages import Message
from sync.ops import cli
from sync.ops.preview import preview
from sync.postgres.db import connect_url

# Small replicas: the guard's floor is lowered so that a tenth of 200 rows is worth holding.
GUARD = {"SYNC_DELETE_GUARD_MIN_ROWS": "10"}
LATER = BASE_TIME + dt.timedelta(days=1)


def _iso(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


@pytest.fixture
def json_log() -> Iterator:
    """The JSON lines the sync writes, as Cloud Logging would receive them."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    logs.configure("INFO", stream)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        for handler in list(root.handlers):
            if getattr(handler, "_opportunity_sync", False):
                root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
def clean(env: Env, pg_admin_url: str, migrated_template: str) -> Iterator[Env]:
    """The same source synced from scratch into a database of its own, for comparison."""
    name = f"os_clean_{uuid.uuid4().hex[:12]}"
    admin = connect_url(pg_admin_url)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}" TEMPLATE "{migrated_template}"')
    base, _, _ = pg_admin_url.rpartition("/")
    try:
        yield Env(env.bq, env.endpoint, f"{base}/{name}", env.salesforce_dataset, env.gong_dataset)
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _live(env: Env) -> dict[str, tuple]:
    """Every stored column the source decides, for the live rows."""
    return {k: v for k, v in env.snapshot().items() if not v[8]}


def _matches_a_clean_sync(env: Env, clean: Env) -> None:
    assert env.projection() == expected_projection(env.data)
    clean.drain(Message.full_resync("clean"))
    assert _live(env) == _live(clean)


def _cli(env: Env, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.main(list(args), env=env.env_vars(**GUARD), out=out)
    return code, out.getvalue()


def _holds(env: Env) -> list[tuple]:
    return env.query(
        "SELECT kind, rows_held, live_rows, limit_rows, run_id::text, released_at IS NOT NULL FROM sync_delete_holds ORDER BY id"
    )


def test_a_full_resync_against_a_tenth_of_the_source_holds_its_purge(env, clean, json_log):
    data = generate(200, seed=301, messy=False)
    env.seed(data)
    env.drain(**GUARD)
    before = env.snapshot()
    # A Fivetran re-sync in flight: the table holds a tenth of its rows.
    data.tables["opportunity"] = data.rows("opportunity")[:20]
    env.seed(data)

    outcomes = env.drain(Message.full_resync("truncated"), **GUARD)

    assert env.snapshot() == before  # not one row soft-deleted
    assert sum(o.held for o in outcomes) == 180
    run_id, status, held, deleted = env.query(
        "SELECT run_id::text, status, rows_held, rows_deleted FROM sync_runs ORDER BY started_at DESC LIMIT 1"
    )[0]
    assert (status, held, deleted) == ("success", 180, 0)
    # 10 % of the 200 live rows may go in one run; 180 may not.
    assert _holds(env) == [("purge", 180, 200, 20, run_id, False)]
    assert env.query("SELECT status, run_id FROM sync_status") == [("success", None)]  # the run finished
    (line,) = [e for e in json_log() if e.get("event") == "deletes_held"]
    assert (line["severity"], line["kind"], line["rows_held"], line["live_rows"], line["limit_rows"]) == (
        "ERROR",
        "purge",
        180,
        200,
        20,
    )
    assert line["run_id"] == run_id
    assert "180 deletes held" in line["message"]
    assert "from 200 live rows" in line["message"]
    assert len(line["sample_ids"]) == 10

    # status and preview show what is held, and release-deletes says what it approves.
    code, sheet = _cli(env, "status")
    assert code == 0
    assert f"deletes held                      180 (purge) by run {run_id[:8]} of 200 live rows: held\n" in sheet
    assert "look, then: python -m sync release-deletes" in sheet
    code, as_json = _cli(env, "status", "--json")
    (held,) = json.loads(as_json)["held_deletes"]
    assert (held["kind"], held["rows_held"], held["live_rows"], held["state"]) == ("purge", 180, 200, "held")
    assert held["sample_ids"] == line["sample_ids"]
    code, preview = _cli(env, "preview")
    assert "deletes held now" in preview
    assert "release-deletes" in preview
    code, released = _cli(env, "release-deletes")
    assert code == 0
    assert f"approved up to 180 deletes (a full resync's purge) held by run {run_id} against 200 live rows" in released
    assert "asked for a full resync (request " in released
    (held,) = json.loads(_cli(env, "status", "--json")[1])["held_deletes"]
    assert (held["state"], held["approved"]) == ("released, re-read pending", 180)
    assert _cli(env, "release-deletes")[1] == "no deletes are held\n"


def _flag_deleted(env: Env, ids: list[str], *, deleted: bool = True) -> None:
    """Salesforce deletes (or restores) these records; Fivetran lands the flag with a new stamp."""
    from google.cloud import bigquery

    sql = f"UPDATE {env.table('opportunity')} SET is_deleted = @deleted, _fivetran_synced = @at WHERE id IN UNNEST(@ids)"
    params = [
        bigquery.ScalarQueryParameter("deleted", "BOOL", deleted),
        bigquery.ScalarQueryParameter("at", "TIMESTAMP", _iso(LATER)),
        bigquery.ArrayQueryParameter("ids", "STRING", ids),
    ]
    env.bq.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=params)).result(timeout=60)
    for row in env.data.rows("opportunity"):
        if row["id"] in ids:
            row.update(is_deleted=deleted, _fivetran_synced=_iso(LATER))


def test_a_wave_of_deleted_rows_is_held_and_the_rest_of_the_page_written(env, clean, json_log):
    data = generate(200, seed=302, messy=False)
    env.seed(data)
    env.drain(**GUARD)
    ids = [o["id"] for o in data.rows("opportunity")]
    wave, edited = ids[:60], ids[100]
    _flag_deleted(env, wave)
    env.update("opportunity", "id", edited, name="Renamed in Salesforce", _fivetran_synced=_iso(LATER))

    outcomes = env.drain(SYNC_PAGE_SIZE="25", **GUARD)

    # Pages before the one that crossed the limit applied theirs; from there on every delete waits.
    applied, held = env.query("SELECT rows_deleted, rows_held FROM sync_runs ORDER BY started_at DESC LIMIT 1")[0]
    assert (applied + held, sum(o.held for o in outcomes)) == (60, held)
    assert 0 < applied <= 20 < applied + held  # 10 % of the 200 live rows may go in one run
    assert env.live_ids() == set(ids) - set(wave[:applied])  # pages are in id order within one stamp
    assert env.projection()[edited][0] == "Renamed in Salesforce"  # the rest of the pages was written
    read, counted = env.query(
        "SELECT rows_read, rows_inserted + rows_updated + rows_unchanged + rows_skipped + rows_deleted"
        " + rows_deleted_not_stored + rows_held FROM sync_runs ORDER BY started_at DESC LIMIT 1"
    )[0]
    assert read == counted  # each row read is counted once, a held one as held
    (hold,) = _holds(env)
    assert hold[:4] == ("source_deletes", held, 200, 20)
    watermark, status = env.query("SELECT last_sync_timestamp, status FROM sync_status")[0]
    assert (watermark, status) == (LATER, "success")  # the cursor and watermark moved past them
    lines = [e for e in json_log() if e.get("event") == "deletes_held"]
    assert lines
    assert all(e["severity"] == "ERROR" and e["kind"] == "source_deletes" for e in lines)
    assert sum(e["rows_held"] for e in lines) == held
    assert lines[-1]["hold_rows"] == held  # the hold's distinct ids, all pages together
    assert (lines[0]["live_rows"], lines[0]["run_deletes_before"]) == (200, applied)

    # A later run reading them again (a re-sync bumps their stamps) holds them again, counted once.
    bumped = _iso(LATER + dt.timedelta(hours=1))
    env.execute(f"UPDATE {env.table('opportunity')} SET _fivetran_synced = TIMESTAMP '{bumped}' WHERE is_deleted")
    env.drain(**GUARD)
    assert env.live_ids() == set(ids) - set(wave[:applied])
    assert _holds(env)[0][:2] == ("source_deletes", held)
    assert [e["event"] for e in json_log() if e.get("event", "").startswith("deletes_")][-1] == "deletes_still_held"


def test_deletes_within_the_limit_are_applied_and_nothing_is_held(env, clean):
    data = generate(200, seed=303, messy=False)
    env.seed(data)
    env.drain(**GUARD)
    ids = [o["id"] for o in data.rows("opportunity")]
    _flag_deleted(env, ids[:20])  # exactly 10 %: not more than the limit
    env.drain(SYNC_PAGE_SIZE="7", **GUARD)
    assert env.live_ids() == set(ids[20:])
    assert _holds(env) == []
    assert env.query("SELECT rows_deleted, rows_held FROM sync_runs ORDER BY started_at DESC LIMIT 1") == [(20, 0)]
    _matches_a_clean_sync(env, clean)


def test_fewer_deletes_than_the_floor_are_never_held(env):
    data = generate(30, seed=304, messy=False)
    env.seed(data)
    env.drain()  # the default floor: 100 deletes
    ids = [o["id"] for o in data.rows("opportunity")]
    data.tables["opportunity"] = data.rows("opportunity")[:3]
    env.seed(data)
    env.drain(Message.full_resync("tiny"))
    assert env.live_ids() == set(ids[:3])  # 27 of 30 gone, as the source says: too few to hold
    assert _holds(env) == []


def test_the_guard_can_be_turned_off(env):
    data = generate(200, seed=305, messy=False)
    env.seed(data)
    env.drain(**GUARD)
    data.tables["opportunity"] = data.rows("opportunity")[:20]
    env.seed(data)
    env.drain(Message.full_resync("off"), SYNC_DELETE_GUARD_PERCENT="off", **GUARD)
    assert len(env.live_ids()) == 20
    assert _holds(env) == []


def _hold_a_wave(env: Env, n: int = 200, wave: int = 60, seed: int = 310) -> tuple[list[str], int, int]:
    """Sync ``n`` rows, then have the source flag the first ``wave`` deleted: (ids, applied, held)."""
    data = generate(n, seed=seed, messy=False)
    env.seed(data)
    env.drain(**GUARD)
    ids = [o["id"] for o in data.rows("opportunity")]
    _flag_deleted(env, ids[:wave])
    env.drain(SYNC_PAGE_SIZE="25", **GUARD)
    applied, held = env.query("SELECT rows_deleted, rows_held FROM sync_runs ORDER BY started_at DESC LIMIT 1")[0]
    assert held > 0
    return ids, applied, held


def _latest_run(env: Env) -> tuple:
    return env.query("SELECT trigger, status, rows_deleted, rows_held FROM sync_runs ORDER BY started_at DESC LIMIT 1")[0]


def test_a_released_purge_deletes_only_what_the_source_lacks_when_it_is_read_again(env, clean):
    data = generate(200, seed=311, messy=False)
    env.seed(data)
    env.drain(**GUARD)
    every = list(data.rows("opportunity"))
    data.tables["opportunity"] = every[:20]
    env.seed(data)
    env.drain(Message.full_resync("truncated"), **GUARD)
    assert len(env.live_ids()) == 200  # 180 held
    # While the operator looks, the Fivetran re-sync goes on: 100 rows are back, 80 are really gone.
    data.tables["opportunity"] = every[:120]
    env.seed(data)

    code, released = _cli(env, "release-deletes")
    assert code == 0
    assert "approved up to 180 deletes" in released
    env.drain(**GUARD)  # the next tick takes the request: a full resync

    assert env.live_ids() == {o["id"] for o in every[:120]}  # 80 purged, not the 180 held
    assert _latest_run(env)[1:] == ("success", 80, 0)
    assert [h[5] for h in _holds(env)] == [True]  # released, and nothing held again
    assert json.loads(_cli(env, "status", "--json")[1])["held_deletes"] == []  # the re-read finished
    _matches_a_clean_sync(env, clean)


@pytest.mark.parametrize("recovered", [False, True])
def test_released_source_deletes_are_derived_again_from_the_source(env, clean, recovered):
    ids, _applied, held = _hold_a_wave(env)
    if recovered:
        _flag_deleted(env, ids[:60], deleted=False)  # the flags were a connector's fault, now undone
    code, released = _cli(env, "release-deletes")
    assert code == 0
    assert f"approved up to {held} deletes (rows the source flags deleted)" in released
    assert "a re-read of the opportunities from the beginning" in released

    env.drain(**GUARD)

    if recovered:
        # Nothing deleted; the rows the first run deleted before it held the rest come back.
        assert env.live_ids() == set(ids)
        assert _latest_run(env)[2:] == (0, 0)
    else:
        assert env.live_ids() == set(ids[60:])
        assert _latest_run(env)[2:] == (held, 0)  # exactly the held ones, within the approval
    assert [h[5] for h in _holds(env)] == [True]
    _matches_a_clean_sync(env, clean)


def test_a_re_read_that_would_delete_more_than_approved_is_held_again(env):
    ids, applied, held = _hold_a_wave(env)
    _flag_deleted(env, ids[60:180])  # the source loses 120 more before the operator releases
    _cli(env, "release-deletes")

    env.drain(SYNC_PAGE_SIZE="25", **GUARD)

    live = 200 - applied
    deleted, held_again = _latest_run(env)[2:]
    assert deleted <= held + live // 10  # the approval plus what any run may delete
    assert deleted + held_again == 180 - applied
    (first, again) = _holds(env)
    assert first[5]  # the released hold
    assert (again[0], again[1], again[5]) == ("source_deletes", held_again, False)  # a new one, waiting
    assert env.live_ids() == set(ids) - set(ids[: applied + deleted])


def test_preview_says_which_deletes_the_next_page_would_hold_and_holds_nothing(env):
    data = generate(200, seed=312, messy=False)
    env.seed(data)
    env.drain(**GUARD)
    ids = [o["id"] for o in data.rows("opportunity")]
    _flag_deleted(env, ids[:60])
    conn = env.connect()
    try:
        result = preview(env.settings(**GUARD), env.source(), conn)
    finally:
        conn.close()
    assert (result.would_hold, result.would_delete, result.held_deletes) == (60, 0, [])
    assert _holds(env) == []  # a dry run records nothing
    assert env.live_ids() == set(ids)


def test_history_mode_deletions_over_the_limit_are_held(env, clean):
    data = to_history_mode(generate(200, seed=313, messy=False), "opportunity")
    env.seed(data)
    env.drain(**GUARD)
    ids = [o["id"] for o in data.rows("opportunity")]
    # 40 records deleted in Salesforce: Fivetran ends their active versions and lands no successor.
    from google.cloud import bigquery

    sql = (
        f"UPDATE {env.table('opportunity')} SET _fivetran_active = FALSE, _fivetran_end = @at"
        " WHERE id IN UNNEST(@ids) AND _fivetran_active"
    )
    params = [
        bigquery.ScalarQueryParameter("at", "TIMESTAMP", _iso(LATER)),
        bigquery.ArrayQueryParameter("ids", "STRING", ids[:40]),
    ]
    env.bq.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=params)).result(timeout=60)
    for row in data.rows("opportunity"):
        if row["id"] in ids[:40]:
            row.update(_fivetran_active=False, _fivetran_end=_iso(LATER))

    env.drain(**GUARD)

    assert env.live_ids() == set(ids)  # one page: 40 deletes of 200 live rows, all held
    assert _latest_run(env)[2:] == (0, 40)
    assert _holds(env)[0][:3] == ("source_deletes", 40, 200)
    _cli(env, "release-deletes")
    env.drain(**GUARD)
    assert env.live_ids() == set(ids[40:])
    _matches_a_clean_sync(env, clean)
