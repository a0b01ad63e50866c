"""Fivetran History Mode: versions, hard deletes, records that come back, mixed modes.

In History Mode Fivetran keeps every version of a record; a record deleted in Salesforce keeps
its versions but none is active, and ``_fivetran_synced`` does not move for it. Each scenario
lands exactly that in the emulator and compares the table with the independent projection.
"""

from __future__ import annotations

import datetime as dt

from projection import expected_projection

from standins.generator import BASE_TIME, generate, to_history_mode
from sync.core.messages import Message


def _iso(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


LATER = _iso(BASE_TIME + dt.timedelta(days=1))
LATER_STILL = _iso(BASE_TIME + dt.timedelta(days=2))


def _synced(env, data, *history_tables: str):
    """Seed ``data`` with these tables in History Mode and sync it once.

    The data comes in batches of 10, so most stamps lie before the watermark rather than on
    it: a change is only picked up if it really moves a stamp.
    """
    to_history_mode(data, *history_tables)
    env.seed(data)
    env.drain()
    assert env.projection() == expected_projection(data)
    return data


def _linked_opportunity(data) -> str:
    """An opportunity that has a call link, so dropping and restoring links is visible."""
    return next(link["object_id"] for link in data.rows("call_context_integration") if link["object_id"].startswith("006000"))


def _links_of(env, opp_id: str) -> int:
    return env.query(
        "SELECT count(*) FROM call_opportunities c JOIN opportunities o ON o.id = c.opportunity_id"
        " WHERE o.gong_opportunity_id = %s",
        (opp_id,),
    )[0][0]


def _totals(outcomes) -> tuple[int, int, int]:
    return (
        sum(o.counts.inserted for o in outcomes),
        sum(o.counts.updated for o in outcomes),
        sum(o.counts.deleted for o in outcomes),
    )


def test_a_new_version_replaces_the_current_one(env):
    data = _synced(env, generate(60, seed=140, batch_size=10, messy=False), "opportunity")
    opp_id = _linked_opportunity(data)

    env.new_version("opportunity", opp_id, LATER, stage_name="Closed Won")
    outcomes = env.drain()

    assert _totals(outcomes) == (0, 1, 0)
    assert env.projection() == expected_projection(data)
    assert env.projection()[opp_id][3] == "Closed Won"
    assert _links_of(env, opp_id) == 1


def test_hard_delete_reaches_postgres_on_an_incremental_run(env):
    data = _synced(env, generate(60, seed=141, batch_size=10, messy=False), "opportunity")
    opp_id = _linked_opportunity(data)
    synced_before = {r["_fivetran_synced"] for r in data.rows("opportunity") if r["id"] == opp_id}

    env.retire("opportunity", opp_id, LATER)  # deleted in Salesforce: no active version is left
    outcomes = env.drain()  # a tick, not a full resync

    assert {r["_fivetran_synced"] for r in data.rows("opportunity") if r["id"] == opp_id} == synced_before
    assert _totals(outcomes) == (0, 0, 1)
    assert opp_id not in env.live_ids()
    assert _links_of(env, opp_id) == 0
    assert env.projection() == expected_projection(data)
    # The deletion itself moved the stamp: the watermark is the time the version ended.
    assert env.query("SELECT last_sync_timestamp FROM sync_status")[0][0] == dt.datetime.fromisoformat(LATER)


def test_deletion_stamped_just_before_the_watermark_is_caught_by_the_lookback(env):
    # One batch per minute: opportunity 0's own stamp is an hour before the watermark.
    data = _synced(env, generate(60, seed=142, batch_size=1, messy=False), "opportunity")
    opp_id = _linked_opportunity(data)
    watermark = env.query("SELECT last_sync_timestamp FROM sync_status")[0][0]

    # _fivetran_end is when the version stopped, which can be earlier than when Fivetran wrote it.
    env.retire("opportunity", opp_id, _iso(watermark - dt.timedelta(minutes=10)))
    outcomes = env.drain(SYNC_LOOKBACK_SECONDS="1800")

    assert sum(o.rows_read for o in outcomes) < 60  # the lookback window, not a re-read of everything
    assert opp_id not in env.live_ids()
    assert env.projection() == expected_projection(data)


def test_hard_delete_reaches_postgres_on_a_full_resync(env):
    data = _synced(env, generate(60, seed=143, batch_size=10, messy=False), "opportunity")
    opp_id = _linked_opportunity(data)
    assert env.query("SELECT last_sync_timestamp FROM sync_status")[0][0] > BASE_TIME

    # Ended long before the watermark (a connector that caught up late): no incremental run sees it.
    env.retire("opportunity", opp_id, _iso(BASE_TIME - dt.timedelta(days=3)))
    env.drain()
    assert opp_id in env.live_ids()

    # The full resync reads it anyway, from its inactive versions, as a deleted row.
    outcomes = env.drain(Message.full_resync("history-resync"))

    assert outcomes[-1].run_done
    assert _totals(outcomes) == (0, 0, 1)
    assert opp_id not in env.live_ids()
    assert _links_of(env, opp_id) == 0
    assert env.projection() == expected_projection(data)
    assert env.query("SELECT status FROM sync_status") == [("success",)]


def test_record_that_comes_back_after_deletion(env):
    data = _synced(env, generate(60, seed=144, batch_size=10, messy=False), "opportunity")
    opp_id = _linked_opportunity(data)
    env.retire("opportunity", opp_id, LATER)
    env.drain()
    assert opp_id not in env.live_ids()

    env.new_version("opportunity", opp_id, LATER_STILL, name="Restored from the recycle bin")
    outcomes = env.drain()

    assert _totals(outcomes) == (0, 1, 0)
    assert env.projection() == expected_projection(data)
    assert env.projection()[opp_id][0] == "Restored from the recycle bin"
    assert _links_of(env, opp_id) == 1  # the links dropped with the deletion are back


def test_deleted_account_blanks_its_name_and_is_recorded(env):
    # Mixed: opportunities in soft-delete mode, accounts and users in History Mode.
    data = _synced(env, generate(80, seed=145, batch_size=10, messy=False), "account", "user")
    account_id = data.rows("opportunity")[0]["account_id"]
    affected = {o["id"] for o in data.rows("opportunity") if o["account_id"] == account_id}

    env.retire("account", account_id, LATER)
    outcomes = env.drain()

    assert _totals(outcomes) == (0, len(affected), 0)
    assert env.projection() == expected_projection(data)
    assert {opp_id for opp_id, row in env.projection().items() if row[1] is None} == affected
    run_id = str(outcomes[-1].run_id)
    rejected = env.query("SELECT source_id FROM sync_rejections WHERE run_id = %s AND reason = 'account_not_found'", (run_id,))
    assert {r[0] for r in rejected} == affected
    # Deleted accounts carry no details into metadata either.
    metadata = env.query("SELECT count(*) FROM opportunities WHERE metadata ? 'account' AND account_name IS NULL")
    assert metadata == [(0,)]


def test_mixed_modes_across_tables(env):
    # Opportunities, users, stage history and call links in History Mode; accounts in soft-delete mode.
    data = generate(80, seed=146, batch_size=10, messy=False)
    data = _synced(env, data, "opportunity", "user", "opportunity_history", "call_context_integration")
    opps = data.rows("opportunity")
    account_id = opps[1]["account_id"]
    owner_id = opps[2]["owner_id"]
    changed = opps[3]["id"]
    call = data.rows("call_context_integration")[0]

    env.update("account", "id", account_id, is_deleted=True, _fivetran_synced=LATER)  # soft delete
    env.retire("user", owner_id, LATER)  # hard delete of a History Mode row
    env.new_version("opportunity", changed, LATER, amount="4242.00", stage_name="Negotiation")
    env.retire("call_context_integration", call["call_id"], LATER, key="call_id")  # the link is gone
    stale = next(h for h in data.rows("opportunity_history") if h["opportunity_id"] == changed)
    env.new_version("opportunity_history", stale["id"], LATER, stage_name="Renamed stage")
    env.drain()

    assert env.projection() == expected_projection(data)
    projected = env.projection()
    assert all(row[1] is None for opp_id, row in projected.items() if data.opportunity(opp_id)["account_id"] == account_id)
    assert all(row[2] is None for opp_id, row in projected.items() if data.opportunity(opp_id)["owner_id"] == owner_id)
    assert call["call_id"] not in projected.get(call["object_id"], ((),))[-1]
    stages = env.query("SELECT metadata->'stage_history' FROM opportunities WHERE gong_opportunity_id = %s", (changed,))[0][0]
    live_history = sorted(
        (h for h in data.rows("opportunity_history") if h["opportunity_id"] == changed and h["_fivetran_active"]),
        key=lambda h: (h["created_date"], h["id"]),
    )
    assert [s["stage"] for s in stages] == [h["stage_name"] for h in live_history]
    assert "Renamed stage" in [s["stage"] for s in stages]

    # A second run changes nothing: the deletions are stable, not re-applied on every read.
    again = env.drain(Message.full_resync("mixed-resync"))
    assert _totals(again) == (0, 0, 0)
    assert env.projection() == expected_projection(data)
