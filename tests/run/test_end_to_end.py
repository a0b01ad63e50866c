"""One run from the BigQuery emulator to Postgres through the real client and the real database."""

from __future__ import annotations

from unittest import mock

from standins.generator import generate
from sync.core.messages import Message
from sync.postgres import writer


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


def test_a_first_run_copies_its_pages_as_they_are_mapped_and_a_resync_sends_no_row(env):
    """New pages are COPY'd and never merged; an unchanged page sends neither a COPY nor a merged row."""
    env.seed(generate(300, seed=2))
    with (
        mock.patch.object(writer, "_copy_new", wraps=writer._copy_new) as copied,
        mock.patch.object(writer, "_merge_and_link", wraps=writer._merge_and_link) as ordinary,
    ):
        first = env.drain(SYNC_PAGE_SIZE="100")
        copies, sent = copied.call_count, [len(c.args[1]) for c in ordinary.call_args_list]
        copied.reset_mock()
        ordinary.reset_mock()
        again = env.drain(Message.full_resync("again"), SYNC_PAGE_SIZE="100")

    stored = sum(o.counts.inserted for o in first)
    assert stored == env.query("SELECT count(*) FROM opportunities")[0][0]
    assert copies == len([o for o in first if o.rows_read]) == 3  # every page with rows was new
    assert sum(sent) == 0  # no opportunity row was merged
    assert copied.call_count == 0
    assert [row for c in ordinary.call_args_list for row in c.args[1]] == []
    assert sum(o.counts.not_stored for o in again) == sum(o.counts.not_stored for o in first) > 0
    assert sum(o.counts.unchanged for o in again) == stored
    assert sum(o.counts.inserted + o.counts.updated + o.counts.deleted for o in again) == 0
