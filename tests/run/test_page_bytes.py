"""A page is bounded by its rows' weight as well as their number (``sync/core/memory.py``).

Heavy rows planted in the BigQuery emulator are synced into a real Postgres with a memory setting
whose budget holds a few of them: pages end at the budget, the result equals the source's
projection, and neither the page-size limit nor the run's record mistakes a page ended by bytes
for one that timed out.
"""

from __future__ import annotations

import logging

from projection import expected_projection

from standins.generator import generate
from sync.core import memory
from sync.core.messages import Message

# At 10 rows a page, 180Mi passes the start-up check and leaves a page 4 MiB of budget.
MEMORY = "180Mi"
HEAVY_CHARS = 150_000  # about 1 MiB at peak each: three fit, the fourth fills the page
HUGE_CHARS = 1_000_000  # about 6.7 MiB: more than the whole budget


def _heavy_source():
    data = generate(12, seed=3, messy=False)
    rows = data.rows("opportunity")
    for i, row in enumerate(rows[:8]):
        row["name"] = f"heavy {i} " + "x" * HEAVY_CHARS
    rows[8]["name"] = "huge " + "y" * HUGE_CHARS
    return data


def test_heavy_rows_end_pages_at_the_memory_budget(env, caplog):
    budget = memory.page_budget_mib(memory.parse_memory_mib(MEMORY))
    assert budget is not None
    assert 3 * memory.row_mib(HEAVY_CHARS) < budget < 4 * memory.row_mib(HEAVY_CHARS) < memory.row_mib(HUGE_CHARS)
    data = _heavy_source()
    env.seed(data)
    with caplog.at_level(logging.INFO, logger="sync.bigquery.source"):
        outcomes = env.drain(SYNC_PAGE_SIZE="10", SYNC_FUNCTION_MEMORY=MEMORY)
    # Eight heavy rows four to a page (the fourth fills it), the huge one alone, then the rest.
    assert [o.rows_read for o in outcomes] == [4, 4, 1, 3]
    assert env.projection() == expected_projection(data)
    assert env.query("SELECT status, page_size_limit FROM sync_status") == [("success", None)]
    assert env.query("SELECT pages, smallest_page_size, rows_inserted FROM sync_runs") == [(4, None, 12)]
    ended = [r for r in caplog.records if getattr(r, "event", None) == "page_memory_budget"]
    assert [r.rows for r in ended] == [4, 4, 1]
    # Run again as a full resync: the same pages, nothing to write, nothing purged.
    again = env.drain(Message.full_resync("heavy"), SYNC_PAGE_SIZE="10", SYNC_FUNCTION_MEMORY=MEMORY)
    assert [o.rows_read for o in again] == [4, 4, 1, 3]
    assert sum(o.counts.inserted + o.counts.updated + o.counts.deleted for o in again) == 0


def test_without_a_memory_setting_only_the_row_limit_ends_a_page(env):
    env.seed(_heavy_source())
    assert [o.rows_read for o in env.drain(SYNC_PAGE_SIZE="10")] == [10, 2]
