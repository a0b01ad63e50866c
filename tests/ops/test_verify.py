"""``python -m sync verify`` against the BigQuery emulator and a real Postgres.

A source is synced by the real pipeline, then Postgres and the source are tampered with;
verify must report exactly the tampered ids, nothing for rows the sync deliberately skips or
degrades, and never write to the replica.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from poison import EVERY_KIND, Poisoned

from standins.generator import generate
from sync.ops.verify import DRIFT, verify

ROOT = Path(__file__).resolve().parents[2]
FUTURE = "2095-12-19T00:00:00Z"


def _verify(env, **kwargs):
    conn = env.connect()
    try:
        return verify(env.source(), conn, deadline=time.monotonic() + 300, **kwargs)
    finally:
        conn.close()


def _cli(env, *args):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SYNC_", "DB_", "BIGQUERY_", "DATABASE_URL", "LOG_"))}
    return subprocess.run(
        [sys.executable, "-m", "sync", "verify", *args],
        cwd=ROOT,
        env={**clean, **env.env_vars()},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _footprint(env):
    """Every row version and lock of the replica's tables, and the tables' sizes: any write changes one."""
    versions = "md5(string_agg(xmin::text || ':' || xmax::text, ',' ORDER BY {}))"
    return env.query(
        f"SELECT (SELECT {versions.format('id')} FROM opportunities),"
        f" (SELECT {versions.format('call_id, opportunity_id')} FROM call_opportunities),"
        f" (SELECT {versions.format('gong_opportunity_id, call_id')} FROM call_links),"
        f" (SELECT {versions.format('entity_type')} FROM sync_status),"
        " (SELECT count(*) FROM sync_rejections), (SELECT count(*) FROM sync_runs), (SELECT count(*) FROM sync_refused_rows)"
    )[0]


def _no_drift(result):
    assert result.drift == 0, {k: result.samples[k] for k in DRIFT if result.counts[k]}


def test_a_clean_replica_has_no_drift_and_verify_writes_nothing(env):
    data = generate(150, seed=61)  # messy: missing names, unknown accounts, placeholder dates, deletions
    env.seed(data)
    env.drain(SYNC_PAGE_SIZE="40")
    before = _footprint(env)

    result = _verify(env, slice_rows=37)  # several slices per stream

    _no_drift(result)
    assert _footprint(env) == before
    opps = data.rows("opportunity")
    assert result.source_rows == len(opps)
    assert result.skipped == sum(1 for r in opps if r["name"] is None)
    assert result.source_live == result.postgres_live == len(env.live_ids())
    live_links = {(r["call_id"], r["object_id"]) for r in data.rows("call_context_integration") if not r["_fivetran_deleted"]}
    assert result.source_links == len(live_links)
    assert result.postgres_links == env.query("SELECT count(*) FROM call_opportunities")[0][0] > 0
    assert result.degraded > 0
    # One evaluation per stream, plus the two schema look-ups (salesforce, gong) of a new source.
    assert result.bigquery_jobs == 4

    cli = _cli(env)
    assert cli.returncode == 0, cli.stderr
    assert "no drift" in cli.stdout
    assert _footprint(env) == before


def _live(data, *, linked):
    """Ids stored live, with call links (every third opportunity has one) or without."""
    rows = enumerate(data.rows("opportunity"))
    return [r["id"] for i, r in rows if r["name"] and not r["is_deleted"] and (i % 3 == 0) == linked]


def test_tampering_with_postgres_and_the_source_is_reported_exactly(env):
    data = generate(120, seed=62)
    env.seed(data)
    env.drain(SYNC_PAGE_SIZE="50")
    plain, linked = _live(data, linked=False), _live(data, linked=True)
    edited, removed, renamed, deleted, purged, gains_link = plain[:6]
    loses_link = linked[0]
    dropped_call = f"call-{int(loses_link[3:]):08d}"
    stray = "006STRAY0000000001"

    # Postgres: edit a stored value (its digest untouched), delete a row, insert a stray, drop and add a link.
    env.query("UPDATE opportunities SET stage = 'Tampered' WHERE gong_opportunity_id = %s", (edited,))
    env.query("DELETE FROM opportunities WHERE gong_opportunity_id = %s", (removed,))
    env.query("INSERT INTO opportunities (gong_opportunity_id, name, content_hash) VALUES (%s, 'stray', '\\x00')", (stray,))
    env.query(
        "DELETE FROM call_opportunities WHERE call_id = %s"
        " AND opportunity_id = (SELECT id FROM opportunities WHERE gong_opportunity_id = %s)",
        (dropped_call, loses_link),
    )
    env.query(
        "INSERT INTO call_opportunities (call_id, opportunity_id)"
        " SELECT 'call-extra', id FROM opportunities WHERE gong_opportunity_id = %s",
        (gains_link,),
    )
    # The source after the sync: a change, a deletion, and a record purged from the recycle bin.
    env.update("opportunity", "id", renamed, name="Renamed after the sync")
    env.update("opportunity", "id", deleted, is_deleted=True)
    env.purge("opportunity", "id", purged)
    before = _footprint(env)

    result = _verify(env, sample=20, slice_rows=50)

    assert result.counts == {"missing": 1, "extra": 3, "changed": 2, "missing_links": 1, "extra_links": 1}
    assert result.samples == {
        "missing": [removed],
        "extra": sorted([stray, deleted, purged]),
        "changed": sorted([edited, renamed]),
        "missing_links": [{"call_id": dropped_call, "opportunity_id": loses_link}],
        "extra_links": [{"call_id": "call-extra", "opportunity_id": gains_link}],
    }
    assert result.drift == 8
    assert _footprint(env) == before
    counted_only = _verify(env, sample=0)
    assert counted_only.counts == result.counts
    assert all(sample == [] for sample in counted_only.samples.values())

    cli = _cli(env, "--json", "--sample", "1")
    assert cli.returncode == 1, cli.stderr
    parsed = json.loads(cli.stdout)
    assert parsed["counts"] == result.counts
    assert parsed["drift"] == 8
    assert all(len(parsed["samples"][k]) == 1 for k in DRIFT)
    events = [json.loads(line) for line in cli.stderr.splitlines() if '"verify_finished"' in line]
    assert len(events) == 1
    assert events[0]["severity"] == "WARNING"
    assert {k: events[0][k] for k in DRIFT} == result.counts
    assert events[0]["drift"] == 8
    assert _footprint(env) == before

    text = _cli(env).stdout
    assert f"missing       1 (first 1: {removed})" in text
    assert "drift: 8" in text


def test_rows_the_sync_skips_or_degrades_are_not_drift(env):
    p = Poisoned(generate(80, seed=63))
    for plant in EVERY_KIND:  # too long an id or call id (skipped), values Postgres cannot index or hold (degraded)
        plant(p)
    opps = p.data.rows("opportunity")
    opps[5]["_fivetran_synced"] = FUTURE  # written by the run's extra page, recorded as degraded future_stamp
    refused, nulled = opps[7], opps[8]
    nulled["stage_name"] = "Cursed"
    env.seed(p.data)
    # Postgres refuses one row outright and one value (remembered in sync_refused_rows).
    env.query(f"ALTER TABLE opportunities ADD CONSTRAINT test_refuses_one CHECK (gong_opportunity_id <> '{refused['id']}')")
    env.query(
        "CREATE FUNCTION test_no_cursed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.stage = 'Cursed' THEN RAISE EXCEPTION 'no' USING ERRCODE = '23514'; END IF; RETURN NEW; END $$"
    )
    env.query(
        "CREATE TRIGGER test_no_cursed BEFORE INSERT OR UPDATE ON opportunities FOR EACH ROW EXECUTE FUNCTION test_no_cursed()"
    )
    env.drain(SYNC_PAGE_SIZE="30")
    assert env.query("SELECT count(*) FROM sync_refused_rows") == [(2,)]
    assert env.query("SELECT stage FROM opportunities WHERE gong_opportunity_id = %s", (nulled["id"],)) == [(None,)]

    result = _verify(env)

    _no_drift(result)
    assert result.future_stamped == 1
    names_missing = sum(1 for r in opps if r["name"] is None)
    assert result.skipped == names_missing + 2  # the long id and the refused row
    assert result.skipped_held == 0
    reasons = {r[0] for r in env.query("SELECT DISTINCT reason FROM sync_rejections WHERE kind = 'degraded'")}
    assert {"future_stamp", "refused_by_postgres", "stage_too_long", "owner_email_too_long"} <= reasons

    # A row synced earlier whose name is now gone: the sync skips it and leaves the old version.
    kept = next(r for r in opps[10:] if r["name"] and not r["is_deleted"])
    env.update("opportunity", "id", kept["id"], name=None)
    env.drain()
    assert kept["id"] in env.live_ids()

    again = _verify(env)

    _no_drift(again)
    assert again.skipped == names_missing + 3
    assert again.skipped_held == 1
