"""Issue #9 section 1: one row Postgres cannot store never fails its page.

Each repro is planted in the BigQuery emulator and synced with the real pipeline into a real
Postgres. Every test ends the same way: the other rows equal the source's projection, the run
succeeded, and the refused row is in ``sync_rejections``. A second run gives the same table
without sending the refused row to Postgres again.
"""

from __future__ import annotations

import io
import json

import pytest
from poison import EVERY_KIND, Poisoned, long_call_id

from standins.generator import generate
from sync.core.messages import Message
from sync.ops import cli


def _poisoned(*plants, n=60, seed=5):
    p = Poisoned(generate(n, seed=seed))
    for plant in plants:
        plant(p)
    return p


def _assert_synced(env, p: Poisoned) -> None:
    assert env.projection() == p.expected()
    assert env.query("SELECT status, last_error FROM sync_status") == [("success", None)]
    found = {tuple(r) for r in env.query("SELECT source_id, kind, reason FROM sync_rejections")}
    assert p.rejections <= found, p.rejections - found
    for source_id, column, expected in p.stored:
        assert env.query(f"SELECT {column} FROM opportunities WHERE gong_opportunity_id = %s", (source_id,)) == [(expected,)]


def _runs(env):
    return env.query("SELECT trigger, status, rows_inserted, rows_updated, rows_deleted FROM sync_runs ORDER BY started_at")


@pytest.mark.parametrize("plant", EVERY_KIND, ids=[f.__name__ for f in EVERY_KIND])
def test_each_poison_row_is_refused_and_the_rest_syncs(env, plant):
    p = _poisoned(plant)
    env.seed(p.data)
    env.drain(SYNC_PAGE_SIZE="25")
    _assert_synced(env, p)
    # Same result again, through a full resync that re-reads every row: nothing to write.
    env.drain(Message.full_resync("again"), SYNC_PAGE_SIZE="25")
    _assert_synced(env, p)
    assert _runs(env)[-1] == ("full_resync", "success", 0, 0, 0)


def test_a_long_call_id_on_the_first_link_page_does_not_stop_the_links(env):
    p = _poisoned(long_call_id)
    env.seed(p.data)
    first = env.pipeline(SYNC_PAGE_SIZE="5").handle(Message.tick())
    assert first.action == "page"
    assert first.counts.links_added > 0  # the rest of page 1's links landed
    env.drain(first.continuation, SYNC_PAGE_SIZE="5")
    _assert_synced(env, p)


def test_every_kind_at_once_and_the_operator_sees_them(env):
    p = _poisoned(*EVERY_KIND)
    env.seed(p.data)
    env.drain(SYNC_PAGE_SIZE="25")
    _assert_synced(env, p)
    out = io.StringIO()
    assert cli.main(["rejections", "--json", "--limit", "1000"], env=env.env_vars(), out=out) == 0
    listed = {(r["source_id"], r["kind"], r["reason"]) for r in json.loads(out.getvalue())}
    assert p.rejections <= listed
    # Excerpts are bounded: no 3,000-character id or 5 KB email lands in the record.
    assert max(len(json.dumps(r)) for r in json.loads(out.getvalue())) < 1000
    # The unsafe optional column was left out, not fatal.
    assert not any("Country-Code" in str(r[0]) for r in env.query("SELECT metadata FROM opportunities"))


# ---- causes nobody listed: the fallback isolates them ----------------------------------------------


def test_an_unlisted_check_constraint_skips_only_its_row(env):
    p = _poisoned()
    env.seed(p.data)
    victim = p.data.rows("opportunity")[7]["id"]
    env.query(f"ALTER TABLE opportunities ADD CONSTRAINT test_refuses_one CHECK (gong_opportunity_id <> '{victim}')")
    env.drain(SYNC_PAGE_SIZE="25")
    p.rejections.add((victim, "skipped", "refused_by_postgres"))
    p._adjust.append(lambda projection: projection.pop(victim))
    _assert_synced(env, p)
    (values,) = env.query("SELECT field_values FROM sync_rejections WHERE reason = 'refused_by_postgres'")
    assert values[0] == {"sqlstate": "23514", "constraint": "test_refuses_one", "table": "opportunities"}
    # The refusal is remembered: a full resync re-reads the row and does not send it again.
    env.drain(Message.full_resync("again"), SYNC_PAGE_SIZE="25")
    _assert_synced(env, p)
    assert env.query("SELECT count(*) FROM sync_refused_rows") == [(1,)]


def test_an_unlisted_trigger_gets_the_offending_value_nulled(env):
    p = _poisoned()
    victim = p.data.rows("opportunity")[3]
    victim["stage_name"] = "Cursed"
    env.seed(p.data)
    env.query(
        "CREATE FUNCTION test_no_cursed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.stage = 'Cursed' THEN RAISE EXCEPTION 'no' USING ERRCODE = '23514'; END IF; RETURN NEW; END $$"
    )
    env.query(
        "CREATE TRIGGER test_no_cursed BEFORE INSERT OR UPDATE ON opportunities FOR EACH ROW EXECUTE FUNCTION test_no_cursed()"
    )
    env.drain(SYNC_PAGE_SIZE="25")
    p.rejections.add((victim["id"], "degraded", "refused_by_postgres"))
    p._adjust.append(
        lambda projection: projection.__setitem__(
            victim["id"], (*projection[victim["id"]][:3], None, *projection[victim["id"]][4:])
        )
    )
    _assert_synced(env, p)
    (values,) = env.query("SELECT field_values FROM sync_rejections WHERE reason = 'refused_by_postgres'")
    assert values[0] == {"sqlstate": "23514", "nulled": "stage", "stage": "Cursed"}
