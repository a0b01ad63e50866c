"""Values Postgres refuses, read from the source, never reach a statement outside row isolation.

Row isolation (``sync/postgres/isolate.py``) covers the synced rows. The rest of a page's commit
carries source values for the whole page at once: the keyset cursor of each stream, a full
resync's id list, the rejection records, a run's error text. A NUL in a source id used to become
the cursor whenever the row ended a page, fail the commit, and stop the sync for good: every
tick re-read the same page. Each test plants such values at page boundaries in the BigQuery
emulator, syncs into a real Postgres at one row a page, at a size whose boundary falls on them
and at the default size, and compares the result with the projection of the same source without
the rows Postgres cannot hold: what a clean full sync of it shows.
"""

from __future__ import annotations

import copy
import json

import pytest
from poison import FIRST, random_text
from projection import expected_projection

from standins.generator import BASE_TIME, FivetranData, generate
from sync.core.errors import SourceSchemaError
from sync.core.messages import Message
from sync.rows import limits, storable

LATER = (BASE_TIME.replace(year=2026, month=11, day=20)).isoformat().replace("+00:00", "Z")


def _good_id(i: int) -> str:
    return f"006{i:012d}"


def _bad_opportunity(data: FivetranData, opp_id: str, **changes: object) -> dict[str, object]:
    """A copy of the row whose id prefixes ``opp_id``, stamped alike, so that it sorts right after it."""
    row = copy.deepcopy(next(r for r in data.rows("opportunity") if r["id"] == opp_id.partition("\x00")[0]))
    row.update(id=opp_id, name=f"unstorable {len(opp_id)}", is_deleted=False, **changes)
    data.rows("opportunity").append(row)
    return row


def _after(i: int, suffix: str = "") -> str:
    """An id that sorts right after good row ``i`` (same stamp): NUL sorts below every other character."""
    return f"{_good_id(i)}\x00{suffix}"


def _clean(data: FivetranData) -> FivetranData:
    """The same source without the rows whose ids cannot be stored: with NUL, or beyond any id (``limits.MAX_ID_BYTES``)."""
    clean = copy.deepcopy(data)
    for table, keys in (("opportunity", ("id",)), ("call_context_integration", ("call_id", "object_id"))):
        rows = clean.rows(table)
        rows[:] = [r for r in rows if all(r.get(k) is None or limits.SOURCE_ID(str(r[k])) is None for k in keys)]
    return clean


def _assert_synced(env, data: FivetranData) -> None:
    assert env.query("SELECT status, last_error FROM sync_status") == [("success", None)]
    assert env.projection() == expected_projection(_clean(data))


def _rejected(env, reason: str) -> set[str]:
    return {r[0] for r in env.query("SELECT source_id FROM sync_rejections WHERE reason = %s", (reason,))}


def _plant(n: int, after: list[int], *, tail: bool = True) -> tuple[FivetranData, list[str]]:
    """``n`` good rows (one stamp), a NUL id right after each good row in ``after`` (three after
    the first of them: a run of them), and, with ``tail``, three more after the last good row."""
    data = generate(n, seed=11)
    bad = [_after(after[0], s) for s in "abc"] + [_after(i) for i in after[1:]]
    if tail:
        bad += [_after(n - 1, s) for s in "xyz"]
    for opp_id in bad:
        _bad_opportunity(data, opp_id)
    return data, bad


@pytest.mark.parametrize(
    ("page_size", "after"),
    [
        ("1", [2, 5]),  # every row ends a page: a run of three, a single one, a run at the end
        ("3", [1, 6]),  # rows 3 (then 4 and 5) and 10 are the last of a page
    ],
)
def test_nul_ids_at_page_boundaries_never_become_the_cursor(env, page_size, after):
    data, bad = _plant(12, after)
    env.seed(data)
    outcomes = env.drain(SYNC_PAGE_SIZE=page_size)
    _assert_synced(env, data)
    assert _rejected(env, "id_contains_nul") == {storable.text(i) for i in bad}
    assert all(r.action == "page" for r in outcomes)
    # Progress: a page never ends on a NUL id, so no page re-reads one.
    assert sum(r.rows_read for r in outcomes) == len(data.rows("opportunity"))
    # Run again from the stored cursor, and as a full resync: the same table, nothing purged.
    env.drain(SYNC_PAGE_SIZE=page_size)
    env.drain(Message.full_resync(f"again-{page_size}"), SYNC_PAGE_SIZE=page_size)
    _assert_synced(env, data)
    assert env.query("SELECT status, rows_deleted FROM sync_runs ORDER BY started_at DESC LIMIT 1") == [("success", 0)]


def test_a_nul_id_ending_a_default_size_page(env):
    """The default page size (2,000 rows): row 2,000 and the last three rows hold NUL ids."""
    data, bad = _plant(2000, [1998], tail=True)
    del data.rows("opportunity")[-6:-4]  # one NUL id at the boundary, not three
    bad = bad[2:]
    env.seed(data)
    outcomes = env.drain()
    assert [r.rows_read for r in outcomes] == [2001, 3]  # page 1 goes on to row 2,001; the tail ends the result
    _assert_synced(env, data)
    assert _rejected(env, "id_contains_nul") == {storable.text(i) for i in bad}
    env.drain(Message.full_resync("default-size"))
    _assert_synced(env, data)


def _bad_link(data: FivetranData, call_id: str, object_id: str) -> None:
    """A link row stamped like the good link its call id extends (``call-N-...``), so that it sorts right after it."""
    call = call_id.rpartition("-")[0] if "\x00" in call_id else call_id
    row = copy.deepcopy(next(r for r in data.rows("call_context_integration") if r["call_id"] == call))
    row.update(call_id=call_id, object_id=object_id)
    data.rows("call_context_integration").append(row)


@pytest.mark.parametrize("page_size", ["1", "2000"])
def test_nul_in_a_call_link_key_never_becomes_the_links_cursor(env, page_size):
    # The emulator groups strings up to their first NUL (BigQuery does not): each bad key is
    # unique before its NUL, so the link query keeps it apart from the good one it follows.
    data = generate(12, seed=11)
    _bad_link(data, "call-00000003-\x00", _good_id(3))  # call id
    _bad_link(data, "call-00000006", _good_id(6) + "-\x00")  # linked opportunity id
    _bad_link(data, "call-00000009-a\x00", _good_id(9))  # a run of two ending the result
    _bad_link(data, "call-00000009-b\x00", _good_id(9))
    env.seed(data)
    env.drain(SYNC_PAGE_SIZE=page_size)
    _assert_synced(env, data)
    assert _rejected(env, "call_id_contains_nul") == {_good_id(3), _good_id(9)}
    assert _rejected(env, "object_id_contains_nul") == {storable.text(_good_id(6) + "-\x00")}
    recorded = {r[0] for r in env.query("SELECT field_values->>'call_id' FROM sync_rejections WHERE reason LIKE '%%nul'")}
    assert {"call-00000003-\\x00", "call-00000009-a\\x00", "call-00000009-b\\x00"} <= recorded
    env.drain(Message.full_resync(f"links-{page_size}"), SYNC_PAGE_SIZE=page_size)
    _assert_synced(env, data)


@pytest.mark.parametrize("page_size", ["1", "2000"])
def test_rejection_records_hold_a_storable_rendering_of_any_value(env, page_size):
    """Values a rejection record quotes reach ``sync_rejections`` outside row isolation.

    An unknown account id is recorded as it was read: one with a NUL, one ending in the six
    characters ``\\u0000"`` (which a text replace on the JSON turned into invalid JSON), a
    future-stamped row with a NUL id (recorded as future-stamped and as skipped).
    """
    data = generate(6, seed=11)
    odd = {"006ODD1": "001\x00GONE", "006ODD2": '001\\u0000"', "006ODD3": "001\\\x00\\"}
    for opp_id, account_id in odd.items():
        row = copy.deepcopy(data.rows("opportunity")[0])
        row.update(id=opp_id, name=f"odd {opp_id}", account_id=account_id, _fivetran_synced=FIRST)
        data.rows("opportunity").append(row)
    future = copy.deepcopy(data.rows("opportunity")[0])
    future.update(id="006FUTURE\x00", name="from the future", _fivetran_synced="2099-01-01T00:00:00Z")
    data.rows("opportunity").append(future)
    env.seed(data)
    env.drain(SYNC_PAGE_SIZE=page_size)
    _assert_synced(env, data)
    recorded = dict(
        env.query("SELECT source_id, field_values->>'account_id' FROM sync_rejections WHERE reason = 'account_not_found'")
    )
    assert {k: recorded[k] for k in odd} == {k: storable.text(v) for k, v in odd.items()}
    assert _rejected(env, "future_stamp") == {"006FUTURE\\x00"}
    assert _rejected(env, "id_contains_nul") == {"006FUTURE\\x00"}


@pytest.mark.parametrize("page_size", ["1", "2000"])
def test_a_full_resync_records_ids_beyond_the_btree_limit_and_leaves_out_nul_ids(env, page_size):
    """The purge's id list is one COPY per page: an id over the btree entry limit (54000 if the
    table had an index) or with a NUL (22021) would fail the page. Neither is ever stored, so
    neither shields a stored row; the purge still removes exactly what the source lost."""
    data = generate(8, seed=11)
    long_id = "006" + random_text(3000, seed=9)
    _bad_opportunity(data, _after(2))
    row = copy.deepcopy(data.rows("opportunity")[3])
    row.update(id=long_id, name="long")
    data.rows("opportunity").append(row)
    env.seed(data)
    env.drain(SYNC_PAGE_SIZE=page_size)
    gone = _good_id(4)
    env.purge("opportunity", "id", gone)
    outcomes = env.drain(Message.full_resync(f"ids-{page_size}"), SYNC_PAGE_SIZE=page_size)
    _assert_synced(env, data)
    assert gone not in env.live_ids()
    assert sum(o.counts.purged for o in outcomes) == 1


def test_an_error_text_holding_nul_is_stored(env):
    """A failure's text reaches ``sync_status.last_error`` and ``sync_runs.error``; a NUL in it is rendered."""
    env.seed(generate(6, seed=11))

    def fail(step: str) -> None:
        if step == "read":
            msg = "a source column named a\x00b is missing"
            raise SourceSchemaError(msg)

    with pytest.raises(SourceSchemaError):
        env.pipeline(checkpoint=fail).handle(Message.tick())
    assert env.query("SELECT status, last_error, lease_owner FROM sync_status") == [
        ("failed", "a source column named a\\x00b is missing", None)
    ]
    env.drain()
    assert env.query("SELECT status FROM sync_status") == [("success",)]


def test_storable_renders_what_postgres_text_refuses():
    cases = {
        "006A": "006A",  # stored as is
        "Zürich": "Zürich",
        "a\x00b": "a\\x00b",
        "\ud800x": "\\ud800x",  # a lone surrogate has no UTF-8 form
    }
    assert {value: storable.text(value) for value in cases} == cases
    assert [storable.fits_text(v) for v in cases] == [True, True, False, False]
    assert json.loads(storable.json_text({"k\x00": ["v\x00", 'x\\u0000"', 1]})) == {"k\\x00": ["v\\x00", 'x\\u0000"', 1]}


@pytest.mark.parametrize("page_size", ["1", "2000"])
def test_nul_in_names_and_in_json_is_stored_without_it_or_recorded(env, page_size):
    """A NUL in a name, a joined account name or inside the stage history's JSON never fails a page."""
    data = generate(6, seed=11)
    opportunity = data.rows("opportunity")[2]
    opportunity["name"] = "Acme\x00 renewal"
    account = next(a for a in data.rows("account") if a["id"] == data.rows("opportunity")[3]["account_id"])
    account["name"] = "Globex\x00 AG"
    history = next(h for h in data.rows("opportunity_history") if h["opportunity_id"] == data.rows("opportunity")[4]["id"])
    history["stage_name"] = "Won\x00"
    env.seed(data)
    env.drain(SYNC_PAGE_SIZE=page_size)
    assert env.query("SELECT status, last_error FROM sync_status") == [("success", None)]
    expected = expected_projection(_clean(data))
    for opp_id, (name, account_name, owner, stage, calls) in expected.items():
        expected[opp_id] = (name.replace("\x00", ""), account_name and account_name.replace("\x00", ""), owner, stage, calls)
    assert env.projection() == expected
    assert _rejected(env, "nul_character_removed") == {opportunity["id"]}
    [(stages,)] = env.query(
        "SELECT metadata->'stage_history' FROM opportunities WHERE gong_opportunity_id = %s", (history["opportunity_id"],)
    )
    assert [s["stage"] for s in stages] == ["Won"]
