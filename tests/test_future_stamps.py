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
from sync.messages import Message
from sync.probe import CLOCK_SKEW

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
