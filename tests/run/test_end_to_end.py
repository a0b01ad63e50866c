"""One run from the BigQuery emulator to Postgres through the real client and the real database."""

from __future__ import annotations

from standins.generator import generate


def test_first_run_loads_every_opportunity_with_joins(env):
    data = generate(300, seed=1)
    env.seed(data)
    outcomes = env.drain(SYNC_PAGE_SIZE="100")
    assert outcomes[-1].run_done

    source = {r["id"]: r for r in data.rows("opportunity")}
    accounts = {a["id"]: a["name"] for a in data.rows("account")}
    emails = {u["id"]: u["email"] for u in data.rows("user")}
    snapshot = env.snapshot()
    valid = {i for i, r in source.items() if r["name"] is not None}
    assert set(snapshot) == {i for i in valid if not source[i]["is_deleted"]}
    for opp_id, row in snapshot.items():
        src = source[opp_id]
        assert row[0] == src["name"]
        assert row[1] == accounts.get(src["account_id"])
        assert row[2] == emails.get(src["owner_id"])
        assert row[3] == src["stage_name"]
