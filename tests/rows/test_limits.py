"""Storage limits, decided before Postgres sees a value; the btree model is pinned against a real server."""

from __future__ import annotations

import random
from decimal import Decimal

import pg8000.dbapi
import pytest
from conftest import query_url

from sync.postgres.db import connect_url
from sync.rows.limits import (
    BTREE_MAX_ITEM_BYTES,
    CALL_LINK_INDEX,
    CALL_OPPORTUNITY_INDEX,
    INDEXES,
    MAX_ID_BYTES,
    OPPORTUNITY_ID_INDEX,
    OWNER_INDEX,
    STAGE_INDEX,
    KeyType,
    excerpt,
    id_fits,
    index_tuple_size,
    round_numeric,
    text_fits,
    text_key_limit,
)

T, D, TS, BIG = KeyType.TEXT, KeyType.DATE, KeyType.TIMESTAMPTZ, KeyType.BIGINT


@pytest.mark.parametrize(
    ("key", "size"),
    [
        ([(T, 10)], 24),  # 8 header + 1-byte varlena header + 10, maxaligned
        ([(T, 126)], 136),  # the longest value with a 1-byte header
        ([(T, 127)], 144),  # 4-byte header from here on
        ([(T, 2692)], 2704),  # unique id index: exactly the limit
        ([(T, 2693)], 2712),  # one byte more: refused
        ([(T, 2684), (TS, 8)], 2704),  # owner index: text padded to 8 before the timestamp
        ([(T, 2685), (TS, 8)], 2712),
        ([(T, 2688), (D, 4)], 2704),  # stage index: a date needs only 4-byte alignment
        ([(T, 2689), (D, 4)], 2712),
        ([(T, 2684), (D, None)], 2704),  # a NULL close date adds the null bitmap (16-byte header)
        ([(T, 2685), (D, None)], 2712),
        ([(T, None), (TS, 8)], 24),  # NULL owner email: bitmap header plus the timestamp
        ([(T, 100), (BIG, 8)], 120),  # short text, then a bigint aligned to 8
    ],
)
def test_index_tuple_size(key, size):
    assert index_tuple_size(key) == size


@pytest.mark.parametrize(
    ("index", "column", "nulls", "limit"),
    [
        (OPPORTUNITY_ID_INDEX, "gong_opportunity_id", frozenset(), 2692),
        (OWNER_INDEX, "owner_email", frozenset(), 2684),  # updated_at is NOT NULL
        (STAGE_INDEX, "stage", frozenset(), 2688),  # with a close date
        (STAGE_INDEX, "stage", frozenset({"close_date"}), 2684),  # without one
    ],
)
def test_text_key_limit(index, column, nulls, limit):
    assert text_key_limit(index, column, nulls) == limit


def test_text_key_limit_refuses_an_index_with_two_text_columns():
    with pytest.raises(ValueError, match="second text column"):
        text_key_limit(CALL_LINK_INDEX, "call_id")


def test_keys_built_from_two_ids_of_the_maximum_length_fit():
    longest = "x" * MAX_ID_BYTES
    assert CALL_LINK_INDEX.fits({"gong_opportunity_id": longest, "call_id": longest})
    assert CALL_OPPORTUNITY_INDEX.fits({"call_id": longest, "opportunity_id": 1})
    assert OPPORTUNITY_ID_INDEX.fits({"gong_opportunity_id": longest})


@pytest.mark.parametrize(
    ("value", "max_bytes", "fits"),
    [
        ("a" * 255, 255, True),
        ("a" * 256, 255, False),
        ("é" * 127, 255, True),  # 254 bytes
        ("é" * 128, 255, False),  # 128 characters but 256 bytes
        ("😀" * 63, 255, True),  # 252 bytes
        ("😀" * 64, 255, False),  # 64 characters, 256 bytes
        ("", 0, True),
    ],
)
def test_text_fits_counts_bytes_not_characters(value, max_bytes, fits):
    assert text_fits(value, max_bytes) is fits


@pytest.mark.parametrize(
    ("value", "fits"),
    [
        ("006000000000001AAA", True),  # a Salesforce id
        (" 006LEAD", True),  # whitespace is part of the id
        ("0" * 3000, False),  # the repro
        ("ü" * 200, False),  # 200 characters, 400 bytes
    ],
)
def test_id_fits(value, fits):
    assert id_fits(value) is fits


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("9999999999999999.995"), None),  # rounds up to 1e16: numeric(18,2) overflow (22003)
        (Decimal("-9999999999999999.995"), None),  # the same below zero
        (Decimal("9999999999999999.994"), Decimal("9999999999999999.99")),  # rounds down and fits
        (Decimal("10000000000000000"), None),  # 17 integer digits
        (Decimal("1e30"), None),  # far out; must not raise from quantize
        (Decimal("0.005"), Decimal("0.01")),  # half away from zero, as Postgres rounds
        (Decimal("-0.005"), Decimal("-0.01")),
        (Decimal("NaN"), None),
        (Decimal("Infinity"), None),
    ],
)
def test_round_numeric_checks_after_rounding(value, expected):
    assert round_numeric(value, 18, 2) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("short", "short"),
        (12, "12"),
        ("x" * 80, "x" * 80),  # at the limit: kept whole
        ("x" * 81, "x" * 80 + "… (81 bytes)"),
        ("é" * 100, "é" * 80 + "… (200 bytes)"),  # the size is reported in bytes
    ],
)
def test_excerpt_is_bounded(value, expected):
    assert excerpt(value) == expected


# ---- the model against the real schema -----------------------------------------------------------

_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789éßü€😀"


def _random_text(n_bytes: int, seed: int) -> str:
    """Incompressible text of exactly ``n_bytes`` UTF-8 bytes, with multibyte characters in it."""
    rnd = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    chars: list[str] = []
    size = 0
    while size < n_bytes:
        char = rnd.choice(_ALPHABET)
        if size + len(char.encode()) > n_bytes:
            char = rnd.choice("abcdefghijklmnopqrstuvwxyz")
        chars.append(char)
        size += len(char.encode())
    return "".join(chars)


def _insert(url: str, sql: str, args: tuple) -> str | None:
    """Run one insert; the SQLSTATE and index name of its failure, or None."""
    conn = connect_url(url)
    try:
        conn.cursor().execute(sql, args)
        conn.commit()
    except pg8000.dbapi.DatabaseError as err:
        return f"{err.args[0]['C']} {err.args[0].get('n')}"
    finally:
        conn.close()
    return None


_OPP = "INSERT INTO opportunities (gong_opportunity_id, name, owner_email, stage, close_date, content_hash)"


@pytest.mark.parametrize(
    ("index", "column", "nulls", "sql"),
    [
        (OPPORTUNITY_ID_INDEX, "gong_opportunity_id", frozenset(), _OPP + " VALUES (%s, 'n', NULL, NULL, NULL, '')"),
        (OWNER_INDEX, "owner_email", frozenset(), _OPP + " VALUES (md5(random()::text), 'n', %s, NULL, NULL, '')"),
        (STAGE_INDEX, "stage", frozenset(), _OPP + " VALUES (md5(random()::text), 'n', NULL, %s, '2026-01-01', '')"),
        (STAGE_INDEX, "stage", frozenset({"close_date"}), _OPP + " VALUES (md5(random()::text), 'n', NULL, %s, NULL, '')"),
    ],
)
def test_model_matches_the_server_at_the_exact_boundary(database_url, index, column, nulls, sql):
    limit = text_key_limit(index, column, nulls)
    assert _insert(database_url, sql, (_random_text(limit, seed=limit),)) is None
    assert _insert(database_url, sql, (_random_text(limit + 1, seed=limit),)) == f"54000 {index.name}"


def test_model_matches_the_server_for_two_text_columns(database_url):
    # call_links' key holds two texts: find the longest call id next to a 1,000-byte opportunity id.
    opp = _random_text(1000, seed=1)
    fits = [n for n in range(BTREE_MAX_ITEM_BYTES) if CALL_LINK_INDEX.fits({"gong_opportunity_id": opp, "call_id": "x" * n})]
    longest = max(fits)
    sql = "INSERT INTO call_links (gong_opportunity_id, call_id) VALUES (%s, %s)"
    assert _insert(database_url, sql, (opp, _random_text(longest, seed=2))) is None
    assert _insert(database_url, sql, (opp, _random_text(longest + 1, seed=3))) == f"54000 {CALL_LINK_INDEX.name}"


def test_every_modelled_index_exists_with_these_key_columns(database_url):
    rows = query_url(
        database_url,
        "SELECT i.relname, array_agg(a.attname ORDER BY k.n) FROM pg_index x"
        " JOIN pg_class i ON i.oid = x.indexrelid"
        " CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, n)"
        " JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum"
        " GROUP BY i.relname",
    )
    actual = {name: tuple(columns) for name, columns in rows}
    for index in INDEXES:
        assert actual[index.name] == tuple(column for column, _ in index.columns), index.name
