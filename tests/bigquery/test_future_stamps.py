"""A row stamped in the future must not freeze the sync: the real pipeline, the emulator and PostgreSQL.

The run's bound is capped at the source's clock plus the skew allowance; rows beyond it are
written in an extra page without moving the watermark, counted, logged once and recorded as
degraded ``future_stamp``; a watermark already in the future is repaired.
"""

from __future__ import annotations

import datetime as dt
import logging

from projection import expected_projection

from standins.generator import BASE_TIME, generate
from sync.bigquery.probe import CLOCK_SKEW
from sync.core.messages import Message

FUTURE = "2095-12-19T00:00:00Z"
FUTURE_TS = dt.datetime(2095, 12, 19, tzinfo=dt.UTC)


def _iso(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _later(days: int) -> str:
    return _iso(BASE_TIME + dt.timedelta(days=days))


def _watermarks(env):
    return env.query("SELECT last_sync_timestamp, link_watermark FROM sync_status")[0]


def _assert_not_in_future(env):
    limit = dt.datetime.now(dt.UTC) + CLOCK_SKEW
    assert all(w is None or w <= limit for w in _watermarks(env))


def _tuple_stats(env):
    env.query("SELECT pg_stat_force_next_flush()")
    return env.query(
        "SELECT sum(n_tup_ins), sum(n_tup_upd), sum(n_tup_del) FROM pg_stat_user_tables"
        " WHERE relname IN ('opportunities', 'call_opportunities', 'call_links')"
    )[0]


def _new_rows(data, n, stamp):
    """``n`` ordinary opportunities landing later, as a Fivetran sync would bring them."""
    base = data.rows("opportunity")[0]
    return [
        {**base, "id": f"006NEW{i:010d}", "name": f"Landed later {i}", "_fivetran_synced": stamp, "last_modified_date": stamp}
        for i in range(n)
    ]


def test_a_future_stamped_opportunity_then_ordinary_rows_all_sync(env, caplog):
    data = generate(60, seed=151, messy=False)
    bad = data.rows("opportunity")[7]
    bad["_fivetran_synced"] = FUTURE
    env.seed(data)

    with caplog.at_level(logging.WARNING, logger="sync"):
        first = env.drain()

    assert env.projection() == expected_projection(data)  # the future row is synced in the run that finds it
    _assert_not_in_future(env)
    run = first[0].run_id
    assert env.query("SELECT rows_future_stamped FROM sync_runs WHERE run_id = %s", (str(run),)) == [(1,)]
    assert env.query("SELECT source_id, kind, reason FROM sync_rejections WHERE reason = 'future_stamp'") == [
        (bad["id"], "degraded", "future_stamp")
    ]
    warnings = [r for r in caplog.records if getattr(r, "event", None) == "future_stamped"]
    assert len(warnings) == 1  # once per run, with sample ids
    assert warnings[0].sample_ids == [bad["id"]]

    # Five ordinary opportunities land next: the run after must read them (the watermark is not 2095).
    new = _new_rows(data, 5, _later(1))
    env.append("opportunity", new)
    data.rows("opportunity").extend(new)
    outcomes = env.drain()

    assert env.projection() == expected_projection(data)
    assert sum(o.counts.inserted for o in outcomes) == 5
    _assert_not_in_future(env)


def test_a_future_stamped_account_without_fivetran_synced(env):
    data = generate(80, seed=152, messy=False)
    for schema in data.schemas.values():
        schema.pop("_fivetran_synced", None)  # stamps are the source's own last-modified times
    account = data.rows("account")[2]
    account["last_modified_date"] = FUTURE  # a clock-skewed loader
    env.seed(data)

    env.drain()

    assert env.projection() == expected_projection(data)  # its opportunities show the account name
    shown = [o for o in data.rows("opportunity") if o["account_id"] == account["id"]]
    assert shown
    assert {env.projection()[o["id"]][1] for o in shown} == {account["name"]}
    _assert_not_in_future(env)

    # Later changes still sync: one of the account's opportunities and an unrelated one.
    mine, other = shown[0], next(o for o in data.rows("opportunity") if o["account_id"] != account["id"])
    env.update("opportunity", "id", mine["id"], name="Renamed under a future account", last_modified_date=_later(1))
    env.update("opportunity", "id", other["id"], stage_name="Closed Won", last_modified_date=_later(1))
    env.drain()

    assert env.projection() == expected_projection(data)
    assert env.projection()[mine["id"]][0] == "Renamed under a future account"
    _assert_not_in_future(env)


def test_a_watermark_already_in_the_future_is_repaired(env, caplog):
    data = generate(50, seed=153, messy=False)
    env.seed(data)
    env.drain()
    # As left by the code before the cap: a 2095 row was read once and has since been fixed.
    env.query("UPDATE sync_status SET last_sync_timestamp = %s, link_watermark = %s", (FUTURE_TS, FUTURE_TS))
    new = _new_rows(data, 5, _later(2))
    env.append("opportunity", new)
    data.rows("opportunity").extend(new)

    with caplog.at_level(logging.WARNING, logger="sync"):
        outcomes = env.drain()

    assert env.projection() == expected_projection(data)
    assert sum(o.counts.inserted for o in outcomes) == 5
    assert [r.stream for r in caplog.records if getattr(r, "event", None) == "watermark_repaired"] == [
        "opportunities",
        "call_links",
    ]
    assert _watermarks(env) == (
        dt.datetime.fromisoformat(_later(2)),
        max(dt.datetime.fromisoformat(c["_fivetran_synced"]) for c in data.rows("call_context_integration")),
    )


def test_rereading_future_stamped_rows_writes_nothing(env):
    data = generate(40, seed=154, messy=False)
    for opp in data.rows("opportunity")[:3]:
        opp["_fivetran_synced"] = FUTURE
    env.seed(data)
    env.drain()
    stats = _tuple_stats(env)
    snapshot = env.snapshot()

    # Another row lands, so the next tick evaluates and re-reads the three future-stamped rows.
    new = _new_rows(data, 1, _later(1))
    env.append("opportunity", new)
    outcomes = env.drain()
    env.drain(Message.full_resync("reread-future"))

    rejected = env.query(
        "SELECT count(*) FROM sync_rejections WHERE reason = 'future_stamp' AND run_id = %s", (str(outcomes[0].run_id),)
    )
    assert rejected == [(3,)]  # the tick read the three again, in its extra page
    inserted, updated, deleted = _tuple_stats(env)
    assert (inserted - stats[0], updated - stats[1], deleted - stats[2]) == (1, 0, 0)  # only the new row
    assert {k: v for k, v in env.snapshot().items() if k != new[0]["id"]} == snapshot


def test_future_stamps_in_a_gong_row_and_a_call_link(env):
    data = generate(60, seed=155, messy=False)
    gong = data.rows("gong_opportunity")[4]
    gong["_fivetran_synced"] = FUTURE  # the health score's table, joined to the opportunity
    link = data.rows("call_context_integration")[0]
    link["_fivetran_synced"] = FUTURE  # one CRM-field row of a call link: the link's stamp is the greatest
    env.seed(data)

    outcomes = env.drain()

    assert env.projection() == expected_projection(data)  # the opportunity and the link are both there
    stored = env.query("SELECT health_score FROM opportunities WHERE gong_opportunity_id = %s", (gong["id"],))[0][0]
    assert float(stored) == gong["health_score"]
    _assert_not_in_future(env)
    run = str(outcomes[0].run_id)
    assert env.query("SELECT rows_future_stamped FROM sync_runs WHERE run_id = %s", (run,)) == [(2,)]
    rejected = env.query("SELECT source_id FROM sync_rejections WHERE reason = 'future_stamp' ORDER BY 1")
    assert sorted(r[0] for r in rejected) == sorted([gong["id"], link["object_id"]])


# -- more future-stamped rows than a page -------------------------------------------------------

PAGE = "20"


def _run_ids(outcomes):
    return {o.run_id for o in outcomes}


def _future_rejections(env, run_id):
    return env.query(
        "SELECT source_id, count(*) FROM sync_rejections WHERE reason = 'future_stamp' AND run_id = %s GROUP BY source_id",
        (str(run_id),),
    )


def test_more_future_stamped_rows_than_three_pages_sync_in_one_run_then_incrementally(env, caplog):
    data = generate(150, seed=156, messy=False)
    future = data.rows("opportunity")[:70]  # three and a half pages of 20
    for opp in future:
        opp["_fivetran_synced"] = FUTURE
    env.seed(data)

    with caplog.at_level(logging.WARNING, logger="sync"):
        first = env.drain(SYNC_PAGE_SIZE=PAGE)

    assert len(_run_ids(first)) == 1  # one run, several pages
    assert len(first) >= 8
    assert env.projection() == expected_projection(data)  # every one of them, not just the first page
    _assert_not_in_future(env)
    run = first[0].run_id
    assert env.query("SELECT rows_future_stamped FROM sync_runs WHERE run_id = %s", (str(run),)) == [(70,)]
    rejected = _future_rejections(env, run)
    assert sorted(r[0] for r in rejected) == sorted(o["id"] for o in future)
    assert {r[1] for r in rejected} == {1}  # once per row per run, not once per page
    warnings = [r for r in caplog.records if getattr(r, "event", None) == "future_stamped"]
    assert [w.count for w in warnings] == [70]

    # Later: three of them change (Fivetran rewrites them, still 2095-stamped) and a row lands.
    changed = [future[5], future[40], future[69]]
    for i, opp in enumerate(changed):
        env.update("opportunity", "id", opp["id"], name=f"Changed far ahead {i}")
    new = _new_rows(data, 1, _later(1))
    env.append("opportunity", new)
    data.rows("opportunity").extend(new)
    second = env.drain(SYNC_PAGE_SIZE=PAGE)

    assert env.projection() == expected_projection(data)
    assert [env.projection()[o["id"]][0] for o in changed] == [f"Changed far ahead {i}" for i in range(3)]
    assert sum(o.counts.updated for o in second) == 3
    assert sum(o.counts.inserted for o in second) == 1
    run = second[0].run_id
    assert env.query("SELECT rows_future_stamped FROM sync_runs WHERE run_id = %s", (str(run),)) == [(70,)]
    _assert_not_in_future(env)


def test_a_future_stamped_account_owner_and_gong_link_with_more_dependents_than_a_page(env):
    data = generate(120, seed=157, messy=False)
    account, owner = data.rows("account")[0], data.rows("user")[0]
    account["_fivetran_synced"] = FUTURE
    owner["_fivetran_synced"] = FUTURE
    dependents = data.rows("opportunity")[:50]  # two and a half pages of 20 show them
    for opp in dependents[:25]:
        opp["account_id"] = account["id"]
    for opp in dependents[25:]:
        opp["owner_id"] = owner["id"]
    links = [r for r in data.rows("call_context_integration") if r["object_type"].lower() == "opportunity"][:30]
    for row in links:
        row["_fivetran_synced"] = FUTURE
    env.seed(data)

    outcomes = env.drain(SYNC_PAGE_SIZE=PAGE)

    assert len(_run_ids(outcomes)) == 1
    assert env.projection() == expected_projection(data)
    assert {env.projection()[o["id"]][1] for o in dependents[:25]} == {account["name"]}
    assert {env.projection()[o["id"]][2] for o in dependents[25:]} == {owner["email"]}
    _assert_not_in_future(env)

    # Later, Fivetran writes a dependent and renames the owner, each with its own clock's stamp.
    env.update("opportunity", "id", dependents[3]["id"], stage_name="Closed Won", _fivetran_synced=_later(1))
    env.update("user", "id", owner["id"], email="renamed@example.com", _fivetran_synced=_later(1))
    env.drain(SYNC_PAGE_SIZE=PAGE)

    assert env.projection() == expected_projection(data)
    assert {env.projection()[o["id"]][2] for o in dependents[25:]} == {"renamed@example.com"}
    assert env.projection()[dependents[3]["id"]][3] == "Closed Won"


def test_a_full_resync_with_future_rows_beyond_a_page_purges_and_keeps_them(env, caplog):
    data = generate(100, seed=158, messy=False)
    future = data.rows("opportunity")[:45]
    for opp in future:
        opp["_fivetran_synced"] = FUTURE
    env.seed(data)
    env.drain(SYNC_PAGE_SIZE=PAGE)
    gone = data.rows("opportunity")[60]["id"]  # purged from Salesforce's recycle bin: never flagged
    env.purge("opportunity", "id", gone)

    with caplog.at_level(logging.INFO, logger="sync"):
        env.drain(Message.full_resync("future-purge"), SYNC_PAGE_SIZE=PAGE)

    assert not [r for r in caplog.records if getattr(r, "event", None) in {"purge_skipped", "purge_off"}]
    assert gone not in env.live_ids()  # the purge ran
    assert {o["id"] for o in future} <= env.live_ids()  # and kept every future-stamped row
    assert env.projection() == expected_projection(data)


def test_a_future_stamped_row_does_not_hide_later_updates_from_the_probe(env):
    data = generate(40, seed=159, messy=False)
    data.rows("opportunity")[0]["_fivetran_synced"] = FUTURE  # the table's greatest stamp, for decades
    env.seed(data)
    env.drain()

    # Fivetran updates another row in place: a new _fivetran_synced, no new row.
    other = data.rows("opportunity")[9]
    env.update("opportunity", "id", other["id"], name="Updated in place", _fivetran_synced=_later(1))
    outcomes = env.drain()

    assert sum(o.counts.updated for o in outcomes) == 1  # not taken for an idle tick
    assert env.projection()[other["id"]][0] == "Updated in place"
    assert env.projection() == expected_projection(data)


def test_future_rows_an_earlier_release_left_unsynced_catch_up_after_the_upgrade(env):
    from sync.postgres.schema import migrate

    data = generate(100, seed=160, messy=False)
    future = sorted(o["id"] for o in data.rows("opportunity")[:45])
    for opp in data.rows("opportunity")[:45]:
        opp["_fivetran_synced"] = FUTURE
    env.seed(data)
    env.drain(SYNC_PAGE_SIZE=PAGE)
    # As an earlier release left it: only the first page (20) of the future-stamped rows was ever
    # written, the last run completed with the probe's marks (stored without the future count),
    # and migration 0004 is not applied yet.
    unsynced = future[20:]
    env.query("DELETE FROM opportunities WHERE gong_opportunity_id = ANY(%s)", (unsynced,))
    env.query(
        "UPDATE sync_status SET source_marks ="
        " (SELECT jsonb_object_agg(k, v - 'future') FROM jsonb_each(source_marks) AS m(k, v))"
    )
    env.query("DELETE FROM schema_migrations WHERE version = 4")
    before = env.query("SELECT id, gong_opportunity_id, xmin::text FROM opportunities ORDER BY id")
    conn = env.connect()
    try:
        assert migrate(conn) == [4]
    finally:
        conn.close()
    assert env.query("SELECT id, gong_opportunity_id, xmin::text FROM opportunities ORDER BY id") == before  # nothing rewritten

    outcomes = env.drain(SYNC_PAGE_SIZE=PAGE)

    assert sum(o.counts.inserted for o in outcomes) == len(unsynced)  # the next run catches up
    assert sum(o.counts.updated for o in outcomes) == 0  # and rewrites nothing it already had
    assert env.projection() == expected_projection(data)
