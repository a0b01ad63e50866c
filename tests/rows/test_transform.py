"""Row mapping and validation: every bad value is reported, none aborts the page."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from decimal import Decimal

import pytest

from sync.rows import encoding, parse, stored
from sync.rows.stored import Role
from sync.rows.transform import PageMapping, transform_links, transform_page, transform_row

GOOD = {
    "id": "006A",
    "name": " Big deal ",
    "account_id": "001A",
    "owner_id": "005A",
    "stage_name": "Proposal",
    "amount": Decimal("1234.565"),
    "close_date": dt.date(2026, 12, 31),
    "is_deleted": False,
    "last_modified": dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
    "account_name": "Acme",
    # JSON text as BigQuery renders it (source_sql leaves Fivetran's bookkeeping out).
    "account_details": '{"id":"001A","name":"Acme","industry":"Software"}',
    "account_found": True,
    "owner_email": "rep@example.com",
    "owner_found": True,
    "owner_active": False,
    "stage_history": '[{"stage":"Prospecting","changed_at":"2026-10-01T00:00:00Z"}]',
    "health_score": 87.5,
}


def test_good_row_maps_every_column():
    row, issues = transform_row(GOOD)
    assert issues == []
    assert row is not None
    assert tuple(row[c] for c in ("gong_opportunity_id", "name", "account_name", "owner_email", "stage")) == (
        "006A",
        "Big deal",
        "Acme",
        "rep@example.com",
        "Proposal",
    )
    assert row["amount"] == Decimal("1234.57")  # half away from zero, as Postgres rounds
    assert row["health_score"] == Decimal("87.50")
    assert row["source_modified_at"] == GOOD["last_modified"]
    assert not row.deleted
    metadata = json.loads(row["metadata"])
    assert metadata["account"] == {"id": "001A", "industry": "Software", "name": "Acme"}
    assert metadata["stage_history"] == [{"stage": "Prospecting", "changed_at": "2026-10-01T00:00:00Z"}]
    assert metadata["owner_active"] is False  # deactivated owners are kept, and flagged
    assert (metadata["account_id"], metadata["owner_id"]) == ("001A", "005A")


def test_metadata_without_joins_is_an_empty_object():
    bare = {"account_details": None, "stage_history": None, "account_id": None, "owner_id": None, "owner_active": None}
    row, _ = transform_row({**GOOD, **bare})
    assert row["metadata"] == "{}"


def test_nul_escapes_are_removed_from_metadata_for_jsonb():
    details = json.dumps({"name": "A\x00B", "note": "keep \\u0000 text"})
    row, _ = transform_row({**GOOD, "account_details": details})
    assert json.loads(row["metadata"])["account"] == {"name": "AB", "note": "keep \\u0000 text"}


@pytest.mark.parametrize(
    ("change", "kind", "reason"),
    [
        ({"id": None}, "skipped", "missing_id"),
        ({"name": "   "}, "skipped", "missing_name"),
        ({"amount": "twelve"}, "degraded", "invalid_amount"),
        ({"amount": float("nan")}, "degraded", "invalid_amount"),
        ({"amount": Decimal("1e20")}, "degraded", "amount_out_of_range"),
        ({"amount": Decimal("9999999999999999.995")}, "degraded", "amount_out_of_range"),  # rounds to 1e16
        ({"amount": "1e999999"}, "degraded", "amount_out_of_range"),  # no giant rounding context
        ({"id": "0" * 3000}, "skipped", "id_too_long"),
        ({"id": "é" * 128}, "skipped", "id_too_long"),  # 128 characters, 256 bytes
        ({"id": "006\x00A"}, "skipped", "id_contains_nul"),  # dropping the NUL would make another id
        ({"id": "   "}, "skipped", "missing_id"),
        ({"owner_email": "Ab9" * 1700}, "degraded", "owner_email_too_long"),
        ({"owner_email": "x" * 5000}, "degraded", "owner_email_too_long"),  # would compress; refused anyway
        ({"owner_email": "é" * 1343}, "degraded", "owner_email_too_long"),  # 2,686 bytes
        ({"stage_name": "Qz" * 2500}, "degraded", "stage_too_long"),
        ({"close_date": "0001-01-01"}, "degraded", "invalid_close_date"),
        ({"close_date": "soon"}, "degraded", "invalid_close_date"),
        ({"health_score": 140}, "degraded", "invalid_health_score"),
        ({"health_score": -0.01}, "degraded", "invalid_health_score"),
        ({"account_found": False, "account_name": None}, "degraded", "account_not_found"),
        ({"owner_found": False, "owner_email": None}, "degraded", "owner_not_found"),
        ({"name": "Nul\x00byte"}, "degraded", "nul_character_removed"),
    ],
)
def test_each_bad_value_is_reported(change, kind, reason):
    row, issues = transform_row({**GOOD, **change})
    assert [(i.kind, i.reason) for i in issues] == [(kind, reason)]
    assert (row is None) == (kind == "skipped")


@pytest.mark.parametrize(
    "change",
    [
        {"owner_email": "é" * 1342},  # 2,684 bytes: the longest owner email the index takes
        {"stage_name": "s" * 2684},  # the longest stage, with or without a close date
        {"stage_name": "s" * 2684, "close_date": None},
        {"id": "😀" * 63},  # 252 bytes
        {"amount": Decimal("9999999999999999.994")},  # rounds down and fits
    ],
)
def test_values_at_the_limit_are_kept(change):
    row, issues = transform_row({**GOOD, **change})
    assert issues == []
    assert row is not None


def test_a_refused_value_is_recorded_as_a_bounded_excerpt():
    _, issues = transform_row({**GOOD, "owner_email": "Ab9" * 1700})
    (issue,) = issues
    assert issue.values == {"owner_email": "Ab9" * 26 + "Ab… (5100 bytes)"}
    _, (skipped,) = transform_row({**GOOD, "id": "0" * 3000})
    assert skipped.source_id == "0" * 80 + "… (3000 bytes)"
    assert len(str(skipped.values)) < 300
    _, (junk,) = transform_row({**GOOD, "close_date": "y" * 5000})
    assert junk.values == {"close_date": "y" * 80 + "… (5000 bytes)"}


@pytest.mark.parametrize("source_id", [" 006LEAD", "006TRAIL ", "006TRAIL", "\t006"])
def test_ids_are_kept_exactly_as_the_source_holds_them(source_id):
    row, issues = transform_row({**GOOD, "id": source_id})
    assert issues == []
    assert row.source_id == source_id


def test_ids_differing_only_in_whitespace_are_two_rows():
    page = transform_page([{**GOOD, "id": "006TRAIL"}, {**GOOD, "id": "006TRAIL "}])
    assert sorted(r.source_id for r in page.rows) == ["006TRAIL", "006TRAIL "]
    assert page.issues == []


def test_bad_values_become_null_not_garbage():
    row, _ = transform_row({**GOOD, "amount": "twelve", "close_date": "0001-01-01", "health_score": 140})
    assert (row["amount"], row["close_date"], row["health_score"]) == (None, None, None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("10.005"), Decimal("10.01")),  # NUMERIC
        (0.1 + 0.2, Decimal("0.30")),  # FLOAT64: via str, not the binary expansion
        ("42", Decimal("42.00")),  # numeric text
        (None, None),
        (True, None),  # a boolean is not an amount
        (float("inf"), None),
        (Decimal("-9999999999999999.99"), Decimal("-9999999999999999.99")),  # numeric(18,2) edge
        # Rounded, not range-checked: the column's check refuses what numeric(18,2) cannot hold.
        (Decimal("9999999999999999.995"), Decimal("10000000000000000.00")),
    ],
)
def test_parse_amount(value, expected):
    assert parse.amount(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.date(2026, 1, 2), dt.date(2026, 1, 2)),  # DATE
        (dt.datetime(2026, 1, 2, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))), dt.date(2026, 1, 3)),  # TIMESTAMP, in UTC
        ("2026-01-02T10:00:00Z", dt.date(2026, 1, 2)),
        ("9999-12-31", None),  # placeholder
        (12, None),
    ],
)
def test_parse_close_date(value, expected):
    assert parse.close_date(value) == expected


@pytest.mark.parametrize(("value", "expected"), [(0, Decimal("0.00")), (100, Decimal("100.00")), (100.001, None), ("x", None)])
def test_parse_health_score(value, expected):
    assert parse.health_score(value) == expected


def test_page_deduplicates_ids_keeping_the_later_row():
    page = transform_page([{**GOOD, "stage_name": "Old"}, {**GOOD, "stage_name": "New"}, {**GOOD, "id": None}])
    assert [r["stage"] for r in page.rows] == ["New"]
    assert page.skipped == 1


def test_a_page_mapped_in_pieces_maps_each_row_once_and_answers_as_transform_page():
    page = [{**GOOD, "id": f"006P{i:02d}"} for i in range(12)]
    page[2] = {**page[2], "name": " "}  # skipped
    page.append({**GOOD, "id": "006P05", "stage_name": "Later"})  # a later duplicate wins
    reads: list[int] = []

    class Counted(list):  # type: ignore[type-arg]
        def __getitem__(self, index):
            reads.append(index)
            return super().__getitem__(index)

    mapping = PageMapping(Counted(page))
    pulled = mapping.rows()
    first = [next(pulled) for _ in range(4)]
    pulled.close()
    result = mapping.result()

    assert sorted(reads) == list(range(len(page)))  # each source row mapped once
    assert [r.source_id for r in first] == ["006P00", "006P01", "006P03", "006P04"]
    assert result == transform_page(page)
    assert [r["stage"] for r in result.rows if r.source_id == "006P05"] == ["Later"]
    assert mapping.ids() == [r["id"] for r in page]


def test_hash_changes_with_any_stored_value_and_only_then():
    base, _ = transform_row(GOOD)
    same, _ = transform_row(dict(GOOD))
    assert base.content_hash == same.content_hash
    for change in (
        {"name": "Other"},
        {"account_name": "Other"},
        {"health_score": 1},
        {"is_deleted": True},
        {"account_details": '{"id":"001A","name":"Acme","industry":"Retail"}'},
    ):
        other, _ = transform_row({**GOOD, **change})
        assert other.content_hash != base.content_hash, change


def test_content_text_is_the_copy_line_that_gets_hashed():
    row, _ = transform_row({**GOOD, "name": "Tab\there", "account_name": None})
    fields = row.content_text.split("\t")
    assert fields[:4] == ["006A", "Tab\\there", "\\N", "rep@example.com"]  # escaped for COPY, NULL as \N
    assert fields[5:8] == ["2026-12-31", "1234.57", "87.50"]
    assert fields[-1] == "f"
    assert row.content_hash == hashlib.blake2b(row.content_text.encode(), digest_size=16).digest()
    live, _ = transform_row(GOOD)
    deleted, _ = transform_row({**GOOD, "is_deleted": True})
    assert deleted.content_text == live.content_text[:-1] + "t"  # the soft-delete flag is hashed too


@pytest.mark.parametrize(
    ("change", "digest"),
    [
        # Digests written by the release before the declaration existed: a deployed table keeps
        # its hashes, so the first run after an upgrade rewrites nothing.
        ({}, "063543e9d5442f4a929e993342ff5b93"),
        (
            {"name": "Tab\there", "account_name": None, "amount": None, "close_date": None, "health_score": None}
            | {"is_deleted": True},
            "d08a254724465e511c79e99464b3455d",
        ),
    ],
)
def test_content_hash_is_stable_across_releases(change, digest):
    row, _ = transform_row({**GOOD, **change})
    assert row.content_hash.hex() == digest


def _rendered_independently(row, order=stored.COPY_ORDER) -> str:
    """The COPY line by the generic encoder, one field at a time, in the declared ``order``."""
    values = [row.content_hash if c.role is Role.HASH else row.deleted if c.role is Role.DELETED else row[c.name] for c in order]
    return encoding.line(values)


@pytest.mark.parametrize(
    "change",
    [
        {},  # every column set
        {"account_name": None, "amount": None, "close_date": None, "health_score": None, "last_modified": None},  # NULLs
        {"is_deleted": True, "stage_name": "a\\b\nc"},  # a flag and characters COPY escapes
    ],
)
def test_copy_lines_match_the_generic_encoder(change):
    row, _ = transform_row({**GOOD, **change})
    assert stored.copy_line(row) == _rendered_independently(row)
    live, _ = transform_row({**GOOD, **change, "is_deleted": False})
    assert stored.insert_line(live) == _rendered_independently(live, stored.INSERT_ORDER)


def test_links_skip_rows_without_both_ends():
    result = transform_links(
        [
            {"call_id": "c1", "object_id": "006A", "deleted": False},
            {"call_id": None, "object_id": "006A", "deleted": False},
            {"call_id": "c2", "object_id": "", "deleted": False},
        ]
    )
    assert [(lk.call_id, lk.gong_opportunity_id) for lk in result.links] == [("c1", "006A")]
    assert result.issues == []  # nothing to link is not a rejection


def test_link_ids_are_exact_and_limited():
    long_call = "c" * 3000
    result = transform_links(
        [
            {"call_id": " c1", "object_id": "006A ", "deleted": False},  # kept exactly
            {"call_id": long_call, "object_id": "006A", "deleted": False},  # on page 1 or not: skipped alone
            {"call_id": "c3", "object_id": "6" * 300, "deleted": False},
            {"call_id": "c4", "object_id": "006A", "deleted": False},
        ]
    )
    assert [(lk.call_id, lk.gong_opportunity_id) for lk in result.links] == [(" c1", "006A "), ("c4", "006A")]
    assert [(i.source_id, i.kind, i.reason) for i in result.issues] == [
        ("006A", "skipped", "call_id_too_long"),
        ("6" * 80 + "… (300 bytes)", "skipped", "object_id_too_long"),
    ]
    assert result.issues[0].values == {"call_id": "c" * 80 + "… (3000 bytes)"}
