"""The specification's scenarios, each run against the BigQuery emulator and a real Postgres."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging

import pytest
from pg8000.exceptions import DatabaseError
from projection import expected_projection

from standins.generator import BASE_TIME, generate
from sync.core import logs
from sync.core.errors import SourceSchemaError
from sync.core.messages import Message

LATER = BASE_TIME + dt.timedelta(days=1)


def _iso(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _link(call_id: str, object_id: str, object_type: str = "Opportunity", field: str = "Name") -> dict:
    return {
        "call_id": call_id,
        "object_type": object_type,
        "object_id": object_id,
        "name": field,
        "value": "x",
        "_fivetran_deleted": False,
        "_fivetran_synced": _iso(BASE_TIME),
    }


def _linked_pairs(env) -> set[tuple[str, str]]:
    rows = env.query(
        "SELECT c.call_id, o.gong_opportunity_id FROM call_opportunities c JOIN opportunities o ON o.id = c.opportunity_id"
    )
    return {(r[0], r[1]) for r in rows}


def test_several_calls_per_opportunity_store_every_pair_once(env):
    data = generate(20, seed=91, messy=False)
    opp, other = data.rows("opportunity")[3]["id"], data.rows("opportunity")[4]["id"]
    # Gong lands one row per CRM field of a link; call-a is on two opportunities.
    data.tables["call_context_integration"] = [
        _link(call, target, field=f)
        for call, target in (("call-a", opp), ("call-b", opp), ("call-c", opp), ("call-a", other))
        for f in ("Name", "StageName", "Amount")
    ]
    env.seed(data)
    env.drain()
    pairs = {("call-a", opp), ("call-b", opp), ("call-c", opp), ("call-a", other)}
    assert _linked_pairs(env) == pairs
    assert env.projection() == expected_projection(data)

    env.drain(Message.full_resync("reread-links"))  # every link row read again
    assert env.query("SELECT count(*) FROM call_opportunities") == [(len(pairs),)]
    with pytest.raises(DatabaseError) as info:  # and the primary key refuses a duplicate outright
        env.query(
            "INSERT INTO call_opportunities (call_id, opportunity_id)"
            " SELECT 'call-b', id FROM opportunities WHERE gong_opportunity_id = %s",
            (opp,),
        )
    assert info.value.args[0]["C"] == "23505"


def test_call_context_rows_for_other_crm_objects_link_nothing(env):
    data = generate(10, seed=92, messy=False)
    opp = data.rows("opportunity")[2]["id"]
    # Every row points at a real opportunity id; only the object type tells them apart.
    data.tables["call_context_integration"] = [
        _link("call-opportunity", opp),
        _link("call-account", opp, "Account"),
        _link("call-contact", opp, "Contact"),
        _link("call-lead", opp, "Lead"),
    ]
    env.seed(data)
    env.drain()
    assert _linked_pairs(env) == {("call-opportunity", opp)}
    assert env.query("SELECT call_id FROM call_links") == [("call-opportunity",)]  # not even remembered


def _updated_at(env) -> dict[str, dt.datetime]:
    return dict(env.query("SELECT gong_opportunity_id, updated_at FROM opportunities"))


def test_updated_at_moves_when_a_row_changes_and_only_then(env):
    data = generate(30, seed=93, messy=False)
    env.seed(data)
    env.drain()
    first = _updated_at(env)
    created = env.query("SELECT gong_opportunity_id, created_at FROM opportunities ORDER BY 1")

    env.drain(Message.full_resync("unchanged"))  # every row re-read, none changed
    assert _updated_at(env) == first

    touched, changed = data.rows("opportunity")[3]["id"], data.rows("opportunity")[4]["id"]
    # A Fivetran re-sync bumps the stamp of an unchanged row; an edit changes a value.
    env.update("opportunity", "id", touched, _fivetran_synced=_iso(LATER))
    env.update("opportunity", "id", changed, stage_name="Edited stage", _fivetran_synced=_iso(LATER))
    outcomes = env.drain()
    # Both moved rows were read again, with the 28 left on the watermark (the range is closed there).
    assert sum(o.rows_read for o in outcomes) == 30
    second = _updated_at(env)
    assert {k for k in second if second[k] != first[k]} == {changed}
    assert second[changed] > first[changed]
    assert env.query("SELECT gong_opportunity_id, created_at FROM opportunities ORDER BY 1") == created


def test_health_score_through_the_salesforce_and_gong_join(env):
    data = generate(12, seed=94, messy=False)
    ids = [o["id"] for o in data.rows("opportunity")]
    scores = {ids[0]: 87.456, ids[1]: 0.0, ids[2]: 100.0, ids[3]: -5.0, ids[4]: 140.0, ids[5]: 100.001, ids[6]: None}
    for gong_row in data.rows("gong_opportunity"):
        gong_row["health_score"] = scores.get(gong_row["id"], gong_row["health_score"])
    data.tables["gong_opportunity"] = [g for g in data.rows("gong_opportunity") if g["id"] != ids[7]]  # no Gong row
    env.seed(data)
    env.drain()
    stored = {
        r[0]: (r[1], r[2])
        for r in env.query("SELECT gong_opportunity_id, health_score::text, health_score_display::text FROM active_opportunities")
    }
    assert stored[ids[0]] == ("87.46", "8.7")  # two decimals, and the app's 0-10 display
    assert stored[ids[1]] == ("0.00", "0.0")  # the range is closed at both ends
    assert stored[ids[2]] == ("100.00", "10.0")
    assert [stored[i] for i in ids[3:8]] == [(None, None)] * 5  # out of range, NULL in Gong, no Gong row
    rejected = env.query("SELECT source_id, field_values FROM sync_rejections WHERE reason = 'invalid_health_score'")
    # Out-of-range scores are recorded with the value; an absent score is not an error.
    assert {r[0]: r[1]["health_score"] for r in rejected} == {ids[3]: -5.0, ids[4]: 140.0, ids[5]: 100.001}


def test_gong_table_without_a_health_score_column_stores_null(env):
    data = generate(8, seed=95, messy=False)
    del data.schemas["gong_opportunity"]["health_score"]
    env.seed(data)
    env.drain()
    assert env.query("SELECT count(*), count(health_score) FROM opportunities") == [(8, 0)]
    assert env.query("SELECT count(*) FROM sync_rejections") == [(0,)]


@pytest.fixture
def json_log():
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


def test_bad_rows_are_logged_as_the_spec_asks(env, json_log):
    data = generate(40, seed=96, messy=False)
    opps = data.rows("opportunity")
    opps[0]["account_id"] = "001NOSUCHACCOUNT"
    opps[1]["owner_id"] = "005NOSUCHOWNER"
    opps[2]["name"] = None
    opps[3]["amount"] = "100000000000000000000"  # a NUMERIC, but beyond numeric(18,2)
    opps[4]["close_date"] = "0001-01-01"  # Salesforce's placeholder date
    env.seed(data)
    env.drain()

    lines = json_log()
    run_id = env.query("SELECT run_id::text FROM sync_runs")[0][0]
    skipped = [e for e in lines if e.get("event") == "row_skipped"]
    assert [(e["severity"], e["reason"], e["source_id"], e["run_id"]) for e in skipped] == [
        ("ERROR", "missing_name", opps[2]["id"], run_id)
    ]
    assert skipped[0]["message"] == f"row skipped: missing_name (id {opps[2]['id']})"
    degraded = {e["reason"]: (e["severity"], e["count"], e["sample_ids"]) for e in lines if e.get("event") == "rows_degraded"}
    assert degraded == {
        "account_not_found": ("WARNING", 1, [opps[0]["id"]]),
        "owner_not_found": ("WARNING", 1, [opps[1]["id"]]),
        "amount_out_of_range": ("WARNING", 1, [opps[3]["id"]]),  # a number, but not one numeric(18,2) holds
        "invalid_close_date": ("WARNING", 1, [opps[4]["id"]]),
    }
    columns = "gong_opportunity_id, account_name, owner_email, amount, close_date"
    stored = {r[0]: r[1:] for r in env.query(f"SELECT {columns} FROM opportunities")}
    assert stored[opps[0]["id"]][0] is None  # the unknown account leaves its name NULL
    assert stored[opps[1]["id"]][1] is None  # the unknown owner leaves the email NULL
    assert (stored[opps[3]["id"]][2], stored[opps[4]["id"]][3]) == (None, None)  # bad amount and date: NULL
    assert opps[2]["id"] not in stored
    assert env.query("SELECT error_count FROM sync_status") == [(1,)]


def test_without_fivetran_synced_last_modified_date_drives_each_increment(env):
    data = generate(60, seed=97, messy=False, batch_size=10)
    for schema in data.schemas.values():
        schema.pop("_fivetran_synced", None)
    opp_columns = data.schemas["opportunity"]
    env.seed(data)
    env.drain()
    watermark = max(dt.datetime.fromisoformat(o["last_modified_date"]) for o in data.rows("opportunity"))
    assert env.query("SELECT last_sync_timestamp FROM sync_status") == [(watermark,)]
    at_watermark = sum(1 for o in data.rows("opportunity") if dt.datetime.fromisoformat(o["last_modified_date"]) == watermark)

    # An edit moves LastModifiedDate past the watermark: the next tick reads it and the rows on
    # the watermark itself (the range is closed there), and writes only the edit.
    edited = data.rows("opportunity")[5]["id"]
    moved = watermark + dt.timedelta(hours=1)
    env.update("opportunity", "id", edited, stage_name="Edited", last_modified_date=_iso(moved), system_modstamp=_iso(moved))
    outcomes = env.drain()
    assert sum(o.rows_read for o in outcomes) == at_watermark + 1
    assert sum(o.counts.updated for o in outcomes) == 1
    assert env.query("SELECT last_sync_timestamp FROM sync_status") == [(moved,)]

    def land(opp_id: str, modified: dt.datetime) -> None:
        row = {**data.rows("opportunity")[0], "id": opp_id, "name": f"Landed late {opp_id}"}
        row |= {"last_modified_date": _iso(modified), "system_modstamp": _iso(modified)}
        env.append("opportunity", [{k: v for k, v in row.items() if k in opp_columns}])
        data.rows("opportunity").append(row)

    # A row modified before the watermark lands late: the lookback re-read catches it ...
    land("006LATE00000001", moved - dt.timedelta(minutes=30))
    env.drain(SYNC_LOOKBACK_SECONDS="3600")
    assert "006LATE00000001" in env.live_ids()
    # ... but one older than the lookback is invisible to increments; a full resync finds it.
    land("006LATE00000002", moved - dt.timedelta(days=2))
    env.drain(SYNC_LOOKBACK_SECONDS="3600")
    assert "006LATE00000002" not in env.live_ids()
    env.drain(Message.full_resync("catch-up"))
    assert env.projection() == expected_projection(data)


# Gong's connector marks deletes with _fivetran_deleted and stamps rows with _fivetran_synced
# only; it has no Salesforce is_deleted, last_modified_date, account_id or owner_id.
GONG_SHAPED = {
    "id": "STRING",
    "name": "STRING",
    "stage_name": "STRING",
    "amount": "NUMERIC",
    "close_date": "DATE",
    "health_score": "FLOAT64",
    "_fivetran_deleted": "BOOL",
    "_fivetran_synced": "TIMESTAMP",
}


def _gong_only(data, schema: dict[str, str]) -> None:
    """Make the Gong opportunity table the only one, shaped by ``schema``."""
    scores = {g["id"]: g["health_score"] for g in data.rows("gong_opportunity")}
    data.schemas["gong_opportunity"] = schema
    data.tables["gong_opportunity"] = [
        {**o, "stage": o["stage_name"], "health_score": scores[o["id"]], "_fivetran_deleted": o["is_deleted"]}
        for o in data.rows("opportunity")
    ]


def test_gong_fallback_reads_a_gong_shaped_table(env):
    data = generate(25, seed=98, messy=False)
    data.rows("opportunity")[7]["is_deleted"] = True  # lands as _fivetran_deleted in the Gong table
    _gong_only(data, GONG_SHAPED)
    env.seed(data, skip_tables=["opportunity", "account", "user", "opportunity_history"])
    env.drain()
    rows = env.query("SELECT gong_opportunity_id, name, stage, account_name, owner_email, health_score FROM active_opportunities")
    live = {g["id"]: g for g in data.rows("gong_opportunity") if not g["_fivetran_deleted"]}
    assert len(live) == 24
    expected = {i: (g["name"], g["stage_name"], None, None) for i, g in live.items()}
    assert {r[0]: (r[1], r[2], r[3], r[4]) for r in rows} == expected
    assert {r[0]: float(r[5]) for r in rows} == pytest.approx({i: g["health_score"] for i, g in live.items()})
    # No account or owner id in the table, so nothing is reported missing.
    assert env.query("SELECT count(*) FROM sync_rejections") == [(0,)]


def test_gong_fallback_names_the_column_it_cannot_find(env):
    data = generate(5, seed=99, messy=False)
    # Gong's own word for the stage is not one of the accepted spellings of stage_name.
    _gong_only(data, {**{k: v for k, v in GONG_SHAPED.items() if k != "stage_name"}, "stage": "STRING"})
    env.seed(data, skip_tables=["opportunity", "account", "user", "opportunity_history"])
    missing = rf"table {env.gong_dataset}\.opportunity has no column for logical column 'stage_name'"
    with pytest.raises(SourceSchemaError, match=missing):
        env.drain()
    assert env.query("SELECT count(*), (SELECT status FROM sync_status) FROM opportunities") == [(0, "failed")]
