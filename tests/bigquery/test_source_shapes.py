"""The shapes Fivetran really lands, read through the real client from the emulator."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from projection import expected_projection

from standins.generator import generate
from sync.core.errors import SourceSchemaError


def test_api_name_columns_give_the_same_table_as_snake_case(env):
    data = generate(150, seed=31)
    env.seed(data)
    env.drain()
    snake = env.snapshot()
    env.seed(data, spelling="pascal")  # Id, StageName, LastModifiedDate, ...
    env.query("TRUNCATE opportunities, call_links CASCADE")
    env.query("UPDATE sync_status SET last_sync_timestamp = NULL, link_watermark = NULL")
    env._source = None
    env.drain()
    assert env.snapshot() == snake


def test_float_amounts_and_timestamp_close_dates(env):
    data = generate(20, seed=32, messy=False)
    data.schemas["opportunity"].update(amount="FLOAT64", close_date="TIMESTAMP")
    for i, row in enumerate(data.rows("opportunity")):
        row["amount"] = 1234.5 + i if i else 0.1 + 0.2
        row["close_date"] = f"2026-03-0{i % 9 + 1}T23:30:00Z"
    env.seed(data)
    env.drain()
    rows = dict(env.query("SELECT gong_opportunity_id, (amount, close_date)::text FROM opportunities"))
    assert rows[data.rows("opportunity")[0]["id"]] == "(0.30,2026-03-01)"
    assert rows[data.rows("opportunity")[1]["id"]] == "(1235.50,2026-03-02)"


def test_history_mode_keeps_only_the_active_version(env):
    data = generate(30, seed=33, messy=False)
    data.schemas["opportunity"]["_fivetran_active"] = "BOOL"
    current = data.rows("opportunity")
    for row in current:
        row["_fivetran_active"] = True
    old = [
        {
            **r,
            "stage_name": "Stale stage",
            "name": "Stale name",
            "_fivetran_active": False,
            "_fivetran_synced": "2026-12-31T00:00:00Z",
        }
        for r in current[:10]
    ]  # newer stamp, but inactive
    current.extend(old)
    env.seed(data)
    env.drain()
    data.tables["opportunity"] = [r for r in current if r["_fivetran_active"]]
    assert env.projection() == expected_projection(data)


def test_gong_fallback_when_salesforce_has_no_opportunity_table(env):
    data = generate(25, seed=34, messy=False)
    # The Gong table becomes the only opportunity source: it needs the spec's columns.
    data.schemas["gong_opportunity"] = {**data.schemas["opportunity"], "health_score": "FLOAT64"}
    scores = {g["id"]: g["health_score"] for g in data.rows("gong_opportunity")}
    data.tables["gong_opportunity"] = [{**o, "health_score": scores[o["id"]]} for o in data.rows("opportunity")]
    env.seed(data, skip_tables=["opportunity"])
    env.drain()
    assert env.projection() == expected_projection(data)
    stored = dict(env.query("SELECT gong_opportunity_id, health_score FROM opportunities"))
    assert {k: float(v) for k, v in stored.items()} == pytest.approx(scores)


def test_optional_tables_missing_turn_features_off(env):
    data = generate(40, seed=35, messy=False)
    env.seed(data, skip_tables=["opportunity_history", "gong_opportunity", "call_context_integration", "account"])
    env.drain()
    rows = env.query(
        "SELECT count(*), count(health_score), count(account_name), count(*) FILTER (WHERE metadata ? 'stage_history')"
        " FROM opportunities"
    )
    assert rows == [(40, 0, 0, 0)]
    assert env.query("SELECT count(*) FROM call_opportunities") == [(0,)]


def test_missing_required_column_names_table_and_column(env):
    data = generate(5, seed=36, messy=False)
    del data.schemas["opportunity"]["stage_name"]
    env.seed(data)
    with pytest.raises(
        SourceSchemaError,
        match=r"opportunity has no column for logical column 'stage_name' \(tried stage_name, StageName, stagename\)",
    ):
        env.drain()
    status, error = env.query("SELECT status, last_error FROM sync_status")[0]
    assert status == "failed"
    assert "stage_name" in error
    assert env.query("SELECT lease_owner FROM sync_status") == [(None,)]


def test_malformed_rows_are_skipped_counted_and_explained(env):
    data = generate(200, seed=37)
    env.seed(data)
    outcomes = env.drain()
    missing_name = {o["id"] for o in data.rows("opportunity") if o["name"] is None}
    placeholder_dates = {o["id"] for o in data.rows("opportunity") if o["close_date"] == "0001-01-01" and o["name"]}
    assert missing_name
    assert placeholder_dates
    assert env.query("SELECT error_count FROM sync_status") == [(len(missing_name),)]
    rejected = env.query("SELECT source_id, kind, reason, field_values::text FROM sync_rejections")
    assert {r[0] for r in rejected if r[2] == "missing_name"} == missing_name
    assert {r[0] for r in rejected if r[2] == "invalid_close_date"} == placeholder_dates
    assert all("0001-01-01" in r[3] for r in rejected if r[2] == "invalid_close_date")
    dates = dict(env.query("SELECT gong_opportunity_id, close_date FROM opportunities"))
    assert all(dates[i] is None for i in placeholder_dates if i in dates)
    assert sum(o.skipped for o in outcomes) == len(missing_name)


def test_stage_history_and_account_details_land_in_metadata(env):
    data = generate(10, seed=38, messy=False)
    env.seed(data)
    env.drain()
    opp = data.rows("opportunity")[0]
    history = sorted(
        (h for h in data.rows("opportunity_history") if h["opportunity_id"] == opp["id"]), key=lambda h: h["created_date"]
    )
    metadata = env.query("SELECT metadata FROM opportunities WHERE gong_opportunity_id = %s", (opp["id"],))[0][0]
    assert [h["stage"] for h in metadata["stage_history"]] == [h["stage_name"] for h in history]
    assert [dt.datetime.fromisoformat(h["changed_at"]) for h in metadata["stage_history"]] == [
        dt.datetime.fromisoformat(h["created_date"]) for h in history
    ]
    account = next(a for a in data.rows("account") if a["id"] == opp["account_id"])
    assert metadata["account"]["industry"] == account["industry"]
    assert Decimal(str(metadata["account"]["annual_revenue"])) == Decimal(account["annual_revenue"])
    assert not any(k.startswith("_fivetran") for k in metadata["account"])


def test_unsafe_optional_account_column_is_left_out_with_one_warning(env, caplog):
    # BigQuery's flexible column names allow this; the emulator stores and lists it as such.
    data = generate(120, seed=39, messy=False)
    data.schemas["account"]["Billing Country-Code"] = "STRING"
    for account in data.rows("account"):
        account["Billing Country-Code"] = f"{account['billing_country']}-X"
    env.seed(data)
    env.overrides["SYNC_PAGE_SIZE"] = "40"
    caplog.set_level("WARNING", logger="sync.bigquery.source")

    outcomes = env.drain()
    env.drain()  # the same source, as in one function instance: discovery is not repeated

    assert len(outcomes) > 2  # several pages and two runs, still one warning
    warnings = [r for r in caplog.records if getattr(r, "event", None) == "column_skipped"]
    assert len(warnings) == 1
    assert "'Billing Country-Code'" in warnings[0].getMessage()
    assert env.query("SELECT status FROM sync_status") == [("success",)]
    assert env.projection() == expected_projection(data)
    details = [r[0] for r in env.query("SELECT metadata->'account' FROM opportunities")]
    assert all("industry" in d and not any("country_code" in k or "Country-Code" in k for k in d) for d in details)


def test_unsafe_name_in_a_required_column_is_a_permanent_error_naming_it(env):
    data = generate(5, seed=40, messy=False)
    data.schemas["opportunity"]["Stage Name"] = data.schemas["opportunity"].pop("stage_name")
    for row in data.rows("opportunity"):
        row["Stage Name"] = row.pop("stage_name")
    env.seed(data)
    with pytest.raises(SourceSchemaError, match=r"column 'Stage Name' would serve logical column 'stage_name'"):
        env.drain()
    status, error = env.query("SELECT status, last_error FROM sync_status")[0]
    assert status == "failed"
    assert "'Stage Name'" in error
