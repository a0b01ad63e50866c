"""Issue #9 section 2: one id everywhere, exactly as the source holds it, through full resyncs."""

from __future__ import annotations

import copy

from projection import expected_projection

from standins.generator import generate
from sync.core.messages import Message

ODD_IDS = (" 006LEAD", "006TRAIL", "006TRAIL ")


def _data():
    data = generate(30, seed=8)
    template = data.rows("opportunity")[1]
    link = next(r for r in data.rows("call_context_integration") if r["object_id"] == data.rows("opportunity")[0]["id"])
    for opp_id in ODD_IDS:
        data.rows("opportunity").append(
            {**copy.deepcopy(template), "id": opp_id, "name": f"deal {opp_id!r}", "is_deleted": False}
        )
        data.rows("call_context_integration").append({**copy.deepcopy(link), "call_id": f" call{opp_id}", "object_id": opp_id})
    return data


def _last_run(env):
    return env.query(
        "SELECT trigger, status, rows_inserted, rows_updated, rows_deleted, rows_skipped FROM sync_runs"
        " ORDER BY started_at DESC LIMIT 1"
    )[0]


def test_ids_with_edge_whitespace_survive_full_resyncs_unchanged(env):
    data = _data()
    env.seed(data)
    # Small pages: the odd ids sit on keyset page boundaries as BigQuery sorts them.
    env.drain(Message.full_resync("r1"), SYNC_PAGE_SIZE="7")
    expected = expected_projection(data)
    assert env.projection() == expected
    assert set(ODD_IDS) <= env.live_ids()  # ' 006LEAD' is not stored as '006LEAD'; the trailing pair are two rows
    for opp_id in ODD_IDS:
        assert expected[opp_id][-1] == (f" call{opp_id}",)  # and each links its own call, ids exact on both ends

    # The purge list holds the same strings: nothing is soft-deleted, nothing is written twice.
    env.drain(Message.full_resync("r2"), SYNC_PAGE_SIZE="7")
    assert env.projection() == expected
    nameless = sum(1 for o in data.rows("opportunity") if not (o.get("name") or "").strip())
    assert _last_run(env) == ("full_resync", "success", 0, 0, 0, nameless)
    assert env.query("SELECT count(*) FROM opportunities WHERE deleted_at IS NOT NULL") == [(0,)]
    assert env.query("SELECT count(*) FROM sync_rejections WHERE source_id LIKE '%%006LEAD%%' OR source_id LIKE '%%TRAIL%%'") == [
        (0,)
    ]


def test_a_stripped_copy_left_by_an_earlier_release_is_purged_by_a_full_resync(env):
    # Before this release ' 006LEAD' was stored as '006LEAD'. The source never held that
    # string, so a full resync soft-deletes it and the exact id takes its place.
    data = _data()
    env.seed(data)
    env.drain()
    env.query("UPDATE opportunities SET gong_opportunity_id = '006LEAD' WHERE gong_opportunity_id = ' 006LEAD'")
    env.drain(Message.full_resync("upgrade"))
    assert env.projection() == expected_projection(data)
    assert env.query("SELECT deleted_at IS NOT NULL FROM opportunities WHERE gong_opportunity_id = '006LEAD'") == [(True,)]
