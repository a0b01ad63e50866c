"""Every table the sync reads is declared once (sync/bigquery/shape.py); the probe watches each one the SQL reads."""

from __future__ import annotations

import re

import pytest

from sync.bigquery.shape import DECLARED, JOINED, Shape, TableShape, compare
from sync.bigquery.source_sql import OPPORTUNITY_PARTS, SourceTables, link_result_sql, opportunity_result_sql
from sync.bigquery.streams import StreamKind
from sync.rows.columns import Column, Table

PROJECT = "local-project"


def _table(dataset: str, name: str, *logical: str) -> Table:
    columns = {c: Column(c, "TIMESTAMP" if c.startswith("_fivetran_s") else "STRING") for c in logical}
    columns["_fivetran_synced"] = Column("_fivetran_synced", "TIMESTAMP")
    return Table(dataset, name, columns)


def _every_table() -> SourceTables:
    d = {
        role: _table("sf" if decl.origin == "salesforce" else "gong", decl.table, *decl.required)
        for role, decl in DECLARED.items()
    }
    d["gong_opportunity"] = _table("gong", "opportunity", "id", "health_score")
    return SourceTables(
        project=PROJECT,
        opportunity=d["opportunity"],
        account=d["account"],
        user=d["user"],
        history=d["opportunity_history"],
        gong_opportunity=d["gong_opportunity"],
        links=d["call_context_integration"],
    )


def _read_by(sql: str) -> set[str]:
    return {f"{ds}.{t}" for ds, t in re.findall(rf"`{PROJECT}`\.`(\w+)`\.`(\w+)`", sql)}


def test_every_table_the_sql_reads_is_watched_by_the_probe():
    tables = _every_table()
    watched = {stream: {t.label for _, t in pairs} for stream, pairs in tables.stream_tables().items()}
    assert _read_by(opportunity_result_sql(tables)) == watched[StreamKind.OPPORTUNITIES]
    assert _read_by(link_result_sql(tables)) == watched[StreamKind.CALL_LINKS]


def test_every_declared_table_of_the_opportunity_stream_has_one_part_of_the_join():
    declared = {role for role, d in DECLARED.items() if d.stream is StreamKind.OPPORTUNITIES}
    assert set(OPPORTUNITY_PARTS) == declared


@pytest.mark.parametrize(
    ("now", "missing", "appeared"),
    [
        # The recorded account table is gone: a failure naming it, never a feature off.
        ({"opportunity": {"id": "Id"}}, ("table sf.account",), ()),
        # A recorded column is gone from a table that is still there.
        ({"opportunity": {}, "account": {"id": "id"}}, ("column sf.opportunity.Id",), ()),
        # Spelled anew (StageName for stage_name) still serves: nothing missing.
        ({"opportunity": {"id": "ID"}, "account": {"id": "id"}}, (), ()),
        # A table that appeared turns its feature on.
        ({"opportunity": {"id": "Id"}, "account": {"id": "id"}, "user": {"id": "id"}}, (), ("owner_emails",)),
    ],
)
def test_compare_names_what_is_gone_and_what_appeared(now, missing, appeared):
    recorded = Shape(
        "salesforce",
        {"opportunity": TableShape("sf.opportunity", {"id": "Id"}), "account": TableShape("sf.account", {"id": "id"})},
    )
    labels = {"opportunity": "sf.opportunity", "account": "sf.account", "user": "sf.user"}
    current = Shape("salesforce", {role: TableShape(labels[role], cols) for role, cols in now.items()})
    difference = compare(recorded, current)
    assert difference.missing == missing
    assert difference.appeared == appeared
    assert difference.reread == (frozenset({StreamKind.OPPORTUNITIES}) if appeared else frozenset())


def test_a_stored_shape_reads_back_and_a_foreign_one_is_refused():
    shape = Shape("gong", {"opportunity": TableShape("gong.opportunity", {"id": "id", "health_score": "health_score"})})
    assert Shape.from_json(shape.to_json()) == shape
    assert Shape.from_json({"opportunity_table": "hubspot", "tables": {}}) is None
    assert Shape.from_json("not a shape") is None
    assert {d.feature for d in JOINED} == set(shape.features()) - {"health_score"} | {"health_score"}
