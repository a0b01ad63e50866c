"""Bisection under savepoints, against a real Postgres: bad rows are found, the rest is written."""

from __future__ import annotations

import itertools
import math
import random
import string
from dataclasses import dataclass, replace

import pytest
from conftest import query_url
from pg8000.exceptions import DatabaseError

from sync.core.errors import TimeBudgetError
from sync.postgres.db import connect_url
from sync.postgres.isolate import write_isolating
from sync.rows import encoding

_TABLE = "CREATE TABLE t (id integer PRIMARY KEY, v numeric(4,2), note text CHECK (note IS DISTINCT FROM 'bad'), key text UNIQUE)"


@dataclass(frozen=True)
class Item:
    id: int
    v: object = 1
    note: str | None = None
    key: str | None = None


def _random(n: int) -> str:
    rnd = random.Random(n)  # noqa: S311 - reproducible test data
    return "".join(rnd.choice(string.ascii_letters) for _ in range(n))


@pytest.fixture
def conn(database_url):
    c = connect_url(database_url)
    c.cursor().execute(_TABLE)
    c.commit()
    yield c
    c.close()


def _copy(conn):
    def write(items):
        conn.cursor().execute(
            "COPY t (id, v, note, key) FROM STDIN",
            stream=encoding.chunks(encoding.line((i.id, i.v, i.note, i.key)) for i in items),
        )
        return len(items)

    return write


def _page(n=100, **bad):
    """``n`` good items; ``bad`` maps a position to the fields that make it bad."""
    return [replace(Item(i), **bad.get(f"at{i}", {})) for i in range(n)]


def _stored(database_url):
    return {r[0]: r[1:] for r in query_url(database_url, "SELECT id, v, note FROM t ORDER BY id")}


def _max_attempts(n: int, bad: int) -> int:
    return 1 + 2 * bad * math.ceil(math.log2(n))


def test_a_clean_page_is_one_attempt(conn, database_url):
    result = write_isolating(conn, _page(), _copy(conn), deadline=math.inf)
    conn.commit()
    assert (result.attempts, result.results, result.refused) == (1, [100], [])
    assert len(_stored(database_url)) == 100


@pytest.mark.parametrize("position", [0, 57, 99])  # first, middle, last
def test_one_bad_row_is_found_wherever_it_is(conn, database_url, position):
    page = _page(**{f"at{position}": {"v": 1000}})  # 22003: numeric(4,2) overflow
    result = write_isolating(conn, page, _copy(conn), deadline=math.inf)
    conn.commit()
    assert [(r.item.id, r.error.sqlstate, r.stored) for r in result.refused] == [(position, "22003", None)]
    assert set(_stored(database_url)) == set(range(100)) - {position}
    assert sum(result.results) == 99  # only kept attempts count
    assert result.attempts <= _max_attempts(100, 1)


def test_every_data_error_class_is_isolated(conn, database_url):
    conn.cursor().execute("INSERT INTO t (id, key) VALUES (-1, 'taken')")
    bad = {
        3: ({"v": 1000}, "22003"),  # numeric overflow
        20: ({"v": "abc"}, "22P02"),  # invalid input syntax
        41: ({"note": "bad"}, "23514"),  # CHECK constraint
        62: ({"key": "taken"}, "23505"),  # unique violation against a stored row
        88: ({"key": _random(3000)}, "54000"),  # index entry above the btree limit
    }
    page = _page(**{f"at{i}": fields for i, (fields, _) in bad.items()})
    result = write_isolating(conn, page, _copy(conn), deadline=math.inf)
    conn.commit()
    assert sorted((r.item.id, r.error.sqlstate) for r in result.refused) == sorted((i, code) for i, (_, code) in bad.items())
    assert set(_stored(database_url)) == ({-1} | set(range(100))) - set(bad)
    assert result.attempts <= _max_attempts(100, len(bad))


def test_error_fields_name_the_constraint_not_the_row(conn):
    page = _page(10, at4={"note": "bad"})
    (refusal,) = write_isolating(conn, page, _copy(conn), deadline=math.inf).refused
    assert (refusal.error.table, refusal.error.constraint) == ("t", "t_note_check")


def test_a_repair_that_writes_is_kept(conn, database_url):
    def null_the_value(item, error):
        assert error.sqlstate == "22003"
        yield "note", replace(item, note=None)  # the wrong column: still refused
        yield "v", replace(item, v=None)

    page = _page(20, at7={"v": 1000})
    result = write_isolating(conn, page, _copy(conn), deadline=math.inf, repairs=null_the_value)
    conn.commit()
    (refusal,) = result.refused
    assert (refusal.item.id, refusal.repair, refusal.stored.v) == (7, "v", None)
    stored = _stored(database_url)
    assert len(stored) == 20
    assert stored[7] == (None, None)  # kept, with the offending value NULL


def test_a_row_no_repair_can_save_is_skipped(conn, database_url):
    page = _page(20, at7={"note": "bad"})
    result = write_isolating(conn, page, _copy(conn), deadline=math.inf, repairs=lambda item, _e: [("v", replace(item, v=None))])
    conn.commit()
    assert [(r.item.id, r.stored, r.repair) for r in result.refused] == [(7, None, None)]
    assert 7 not in _stored(database_url)


@pytest.mark.parametrize(
    "code",
    [
        "08006",  # connection failure
        "40001",  # serialization failure
        "42501",  # permission denied
        "57014",  # statement timeout: the page shrinks instead
    ],
)
def test_errors_that_are_not_about_a_row_propagate_unchanged(conn, code):
    def write(items):
        conn.cursor().execute(f"DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{code}'; END $$")
        return len(items)

    with pytest.raises(DatabaseError) as raised:
        write_isolating(conn, _page(), write, deadline=math.inf)
    assert raised.value.args[0]["C"] == code
    conn.rollback()


def test_a_bug_in_the_write_propagates(conn):
    def write(_items):
        msg = "bug"
        raise ValueError(msg)

    with pytest.raises(ValueError, match="bug"):
        write_isolating(conn, _page(), write, deadline=math.inf)


def test_isolation_stops_at_the_deadline(conn, database_url):
    ticks = itertools.count()
    page = _page(at10={"v": 1000}, at90={"v": 1000})
    with pytest.raises(TimeBudgetError, match="retried smaller"):
        write_isolating(conn, page, _copy(conn), deadline=5, clock=lambda: next(ticks))
    conn.rollback()
    assert _stored(database_url) == {}  # nothing half-written survives the rollback


def test_the_clean_path_ignores_the_deadline(conn):
    # The page write itself always gets its attempt; only isolation is bounded.
    result = write_isolating(conn, _page(), _copy(conn), deadline=-1)
    assert result.attempts == 1
