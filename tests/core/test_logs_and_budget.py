"""Structured logs as Cloud Logging parses them, and the page time budget."""

from __future__ import annotations

import io
import json
import logging
import time

from standins.generator import generate
from sync.bigquery.cursor import Keyset
from sync.bigquery.source import StreamRead
from sync.bigquery.streams import StreamKind
from sync.core import logs
from sync.core.messages import Message


def test_log_lines_are_json_with_severity_message_and_fields():
    stream = io.StringIO()
    logs.configure("INFO", stream)
    try:
        logging.getLogger("sync.test").warning("%d rows degraded", 3, extra={"event": "rows_degraded", "run_id": "r1"})
    finally:
        logs.configure("INFO")
    entry = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert entry["severity"] == "WARNING"
    assert entry["message"] == "3 rows degraded"
    assert (entry["event"], entry["run_id"]) == ("rows_degraded", "r1")


def test_spent_budget_cuts_the_page_and_the_run_continues(env):
    data = generate(30, seed=71, messy=False)
    env.seed(data)
    page = env.source().read(StreamRead(StreamKind.OPPORTUNITIES, Keyset.start(), None, None, 100, time.monotonic() - 1))
    assert len(page.rows) == 1  # stops right after the first row once the budget is gone
    assert page.truncated
    assert not page.exhausted
    assert page.position.offset == 1  # the next page starts right after it, in the same result
    assert page.upper_bound is not None


def test_run_finished_summary_line(env, caplog):
    env.seed(generate(20, seed=72, messy=False))
    with caplog.at_level(logging.INFO, logger="sync.run.sync_runs"):
        env.drain(Message.tick())
    finished = [r for r in caplog.records if getattr(r, "event", None) == "run_finished"]
    assert len(finished) == 1
    record = finished[0]
    assert (record.status, record.rows_read, record.rows_inserted, record.pages) == ("success", 20, 20, 1)
    # The dashboard's lag chart: the run's end minus the newest source change it committed.
    (watermark,) = env.query("SELECT extract(epoch FROM now() - last_sync_timestamp) FROM sync_status")[0]
    assert 0 < record.lag_seconds <= float(watermark)
