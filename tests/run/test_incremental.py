"""Multi-run scenarios: the table converges to the source, and unchanged re-reads write nothing."""

from __future__ import annotations

import datetime as dt

from projection import expected_projection

from standins.generator import BASE_TIME, generate
from sync.core.messages import Message


def _iso(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _tuple_stats(env) -> tuple[int, int, int]:
    """(inserted, updated, deleted) tuples ever written to opportunities, from the server's counters."""
    env.query("SELECT pg_stat_force_next_flush()")
    row = env.query("SELECT n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables WHERE relname = 'opportunities'")[0]
    return int(row[0]), int(row[1]), int(row[2])


def test_run_twice_gives_the_same_table_and_writes_nothing(env):
    env.seed(generate(400, seed=2))
    env.drain(SYNC_PAGE_SIZE="150")
    before = env.snapshot()
    xmins = env.query("SELECT gong_opportunity_id, xmin::text, updated_at FROM opportunities ORDER BY 1")
    seq_before = env.query("SELECT last_value FROM opportunities_id_seq")[0][0]
    stats_before = _tuple_stats(env)

    outcomes = env.drain(Message.full_resync("resync-1"), SYNC_PAGE_SIZE="150")

    assert outcomes[-1].run_done
    assert sum(o.counts.inserted + o.counts.updated + o.counts.deleted for o in outcomes) == 0
    assert env.snapshot() == before
    assert env.query("SELECT gong_opportunity_id, xmin::text, updated_at FROM opportunities ORDER BY 1") == xmins
    assert env.query("SELECT last_value FROM opportunities_id_seq")[0][0] == seq_before
    assert _tuple_stats(env) == stats_before


def test_projection_matches_source_after_first_run(env):
    data = generate(500, seed=3)
    env.seed(data)
    env.drain(SYNC_PAGE_SIZE="200")
    assert env.projection() == expected_projection(data)
    status = env.query("SELECT status, items_synced, error_count, last_sync_timestamp FROM sync_status")[0]
    skipped = sum(1 for o in data.rows("opportunity") if o["name"] is None)
    assert status[0] == "success"
    assert status[2] == skipped > 0
    assert status[1] == len(env.snapshot())
    assert status[3] == max(dt.datetime.fromisoformat(o["_fivetran_synced"]) for o in data.rows("opportunity"))


def test_page_size_one_with_fifty_rows_on_one_timestamp(env):
    data = generate(50, seed=4, batch_size=1000, messy=False)  # every row shares one _fivetran_synced
    assert len({o["_fivetran_synced"] for o in data.rows("opportunity")}) == 1
    env.seed(data, skip_tables=["call_context_integration"])
    outcomes = env.drain(SYNC_PAGE_SIZE="1")
    read_ids = [o.rows_read for o in outcomes]
    assert sum(read_ids) == 50  # each row read exactly once across the page boundaries
    assert len(outcomes) == 51  # 50 full pages and one empty page that proves the end
    assert set(env.snapshot()) == {o["id"] for o in data.rows("opportunity")}


def test_account_rename_and_owner_email_change_reach_their_opportunities(env):
    data = generate(200, seed=5, messy=False)
    env.seed(data)
    env.drain()
    opp = data.rows("opportunity")[10]
    later = _iso(BASE_TIME + dt.timedelta(days=1))
    env.update("account", "id", opp["account_id"], name="Renamed Account AG", _fivetran_synced=later)
    env.update("user", "id", opp["owner_id"], email="new.address@example.com", _fivetran_synced=later)
    affected = {
        o["id"] for o in data.rows("opportunity") if o["account_id"] == opp["account_id"] or o["owner_id"] == opp["owner_id"]
    }

    outcomes = env.drain()

    assert sum(o.counts.updated for o in outcomes) == len(affected)
    assert env.projection() == expected_projection(data)
    row = env.projection()[opp["id"]]
    assert row[1] == "Renamed Account AG"
    assert row[2] == "new.address@example.com"


def test_rows_landing_during_a_run_wait_for_the_next_run(env):
    data = generate(120, seed=6, messy=False)
    data.tables["call_context_integration"] = []
    env.seed(data, skip_tables=["call_context_integration"])
    pipeline = env.pipeline(SYNC_PAGE_SIZE="50")
    first = pipeline.handle(Message.tick())
    late = {
        **data.rows("opportunity")[0],
        "id": "006LATE000000001",
        "name": "Landed mid-run",
        "_fivetran_synced": _iso(BASE_TIME + dt.timedelta(days=2)),
    }
    env.append("opportunity", [late])
    data.rows("opportunity").append(late)

    message, outcomes = first.continuation, [first]
    while message is not None:
        outcomes.append(pipeline.handle(message))
        message = outcomes[-1].continuation

    assert sum(o.rows_read for o in outcomes) == 120  # the frozen bound kept the run finite
    assert "006LATE000000001" not in env.snapshot()
    env.drain()
    assert env.projection() == expected_projection(data)


def test_late_landing_row_with_old_last_modified_is_caught(env):
    data = generate(60, seed=7, messy=False)
    env.seed(data)
    env.drain()
    old = _iso(BASE_TIME - dt.timedelta(days=10))  # modified long ago, landed just now
    late = {
        **data.rows("opportunity")[0],
        "id": "006LATE000000002",
        "name": "Late lander",
        "last_modified_date": old,
        "system_modstamp": old,
        "_fivetran_synced": _iso(BASE_TIME + dt.timedelta(hours=3)),
    }
    env.append("opportunity", [late])
    data.rows("opportunity").append(late)
    env.drain()
    assert env.projection() == expected_projection(data)


def test_lookback_rereads_cost_no_writes(env):
    data = generate(100, seed=8, messy=False)
    env.seed(data)
    env.drain(SYNC_LOOKBACK_SECONDS="86400")
    stats = _tuple_stats(env)
    # One row lands, so the next tick evaluates (an idle tick would not read at all) ...
    late = {**data.rows("opportunity")[0], "id": "006LOOKBACK00001", "name": "Lands later"}
    late["_fivetran_synced"] = _iso(BASE_TIME + dt.timedelta(hours=1))
    env.append("opportunity", [late])
    outcomes = env.drain(SYNC_LOOKBACK_SECONDS="86400")
    assert sum(o.rows_read for o in outcomes) == 101  # ... and its overlap re-reads every earlier row
    inserted, updated, deleted = _tuple_stats(env)
    assert (inserted - stats[0], updated - stats[1], deleted - stats[2]) == (1, 0, 0)  # only the new row is written


def test_deleted_then_full_resync_with_purged_row(env):
    data = generate(150, seed=9, messy=False)
    env.seed(data)
    env.drain()
    linked = next(link["object_id"] for link in data.rows("call_context_integration") if link["object_id"].startswith("006000"))
    purged = data.rows("opportunity")[20]["id"]
    later = _iso(BASE_TIME + dt.timedelta(days=1))
    env.update("opportunity", "id", linked, is_deleted=True, _fivetran_synced=later)
    env.drain()
    assert linked not in env.live_ids()
    assert env.query(
        "SELECT count(*) FROM call_opportunities c JOIN opportunities o ON o.id = c.opportunity_id"
        " WHERE o.gong_opportunity_id = %s",
        (linked,),
    ) == [(0,)]

    env.purge("opportunity", "id", purged)
    env.drain()  # an incremental run cannot see a row that vanished
    assert purged in env.live_ids()
    outcomes = env.drain(Message.full_resync("resync-purge"))
    assert purged not in env.live_ids()
    assert sum(o.counts.purged for o in outcomes) == 1
    assert env.projection() == expected_projection(data)
    assert env.query("SELECT status FROM sync_status") == [("success",)]


def test_link_removed_in_gong_is_removed_here(env):
    data = generate(90, seed=10, messy=False)
    env.seed(data)
    env.drain()
    link = data.rows("call_context_integration")[0]
    env.update(
        "call_context_integration",
        "call_id",
        link["call_id"],
        _fivetran_deleted=True,
        _fivetran_synced=_iso(BASE_TIME + dt.timedelta(days=1)),
    )
    outcomes = env.drain()
    assert sum(o.counts.links_removed for o in outcomes) == 1
    assert env.projection() == expected_projection(data)


def test_link_before_its_opportunity_lands_when_the_opportunity_does(env):
    data = generate(30, seed=11, messy=False)
    env.seed(data)
    env.drain()
    later = _iso(BASE_TIME + dt.timedelta(days=1))
    env.append(
        "call_context_integration",
        [
            {
                "call_id": "call-early",
                "object_type": "Opportunity",
                "object_id": "006NEW0000000001",
                "name": "Name",
                "value": "x",
                "_fivetran_deleted": False,
                "_fivetran_synced": later,
            }
        ],
    )
    env.drain()
    assert env.query("SELECT count(*) FROM call_links WHERE call_id = 'call-early'") == [(1,)]
    new_opp = {
        **data.rows("opportunity")[0],
        "id": "006NEW0000000001",
        "name": "Arrives later",
        "_fivetran_synced": _iso(BASE_TIME + dt.timedelta(days=2)),
    }
    env.append("opportunity", [new_opp])
    env.drain()
    assert env.projection()["006NEW0000000001"][-1] == ("call-early",)
    assert env.query(
        "SELECT count(*) FROM call_opportunities c JOIN opportunities o ON o.id = c.opportunity_id"
        " WHERE o.gong_opportunity_id = '006DOESNOTEXIST'"
    ) == [(0,)]


def test_undeleted_opportunity_comes_back_with_its_links(env):
    data = generate(30, seed=12, messy=False)
    env.seed(data)
    env.drain()
    opp_id = data.rows("call_context_integration")[0]["object_id"]
    env.update("opportunity", "id", opp_id, is_deleted=True, _fivetran_synced=_iso(BASE_TIME + dt.timedelta(days=1)))
    env.drain()
    env.update("opportunity", "id", opp_id, is_deleted=False, _fivetran_synced=_iso(BASE_TIME + dt.timedelta(days=2)))
    env.drain()
    assert env.projection() == expected_projection(data)
    assert env.projection()[opp_id][-1]
