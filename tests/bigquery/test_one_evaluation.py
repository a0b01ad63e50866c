"""One BigQuery evaluation per run, end to end: the real pipeline, the emulator and PostgreSQL.

Jobs are counted at the library seam (``client.query`` wrapped, not replaced) and by the run
itself (``sync_runs.bigquery_jobs``); the table is compared with the independent projection.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from unittest import mock

import pytest
from projection import expected_projection

from standins.generator import BASE_TIME, generate
from sync.core.messages import Message

STAMP_COLUMNS = {"_fivetran_synced", "_fivetran_start", "_fivetran_end", "_fivetran_active"}


def _iso(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


@pytest.fixture
def spy(env):
    with mock.patch.object(env.bq, "query", wraps=env.bq.query) as wrapped:
        yield wrapped


def _warm(env, spy):
    """Resolve the schema once, as a warm instance has, and count jobs from here on."""
    env.source().tables()
    spy.reset_mock()


def _run_row(env, run_id):
    return env.query(
        "SELECT pages, rows_read, bigquery_jobs, bigquery_bytes_processed, bigquery_bytes_billed, status"
        " FROM sync_runs WHERE run_id = %s",
        (str(run_id),),
    )[0]


@pytest.mark.parametrize(("rows", "page_size", "pages"), [(30, 100, 1), (290, 20, 15)])
def test_jobs_per_run_do_not_grow_with_its_pages(env, spy, rows, page_size, pages):
    data = generate(rows, seed=91, messy=False)
    env.seed(data)
    spy.reset_mock()
    outcomes = env.drain(SYNC_PAGE_SIZE=str(page_size))
    assert len(outcomes) == pages
    assert env.projection() == expected_projection(data)
    # Two schema look-ups (this pipeline's source is new; a warm instance has them cached), the
    # probe, one evaluation of the join and one of the call links, however many pages.
    run = _run_row(env, outcomes[0].run_id)
    assert run[0] == pages
    assert run[2] == spy.call_count == 2 + 3  # the run counts every job it created, as billed
    assert run[3] == 0  # the emulator bills nothing and says so
    assert run[4] is None  # ... and does not say what it billed: unknown, not zero


def test_a_result_lost_mid_run_is_evaluated_again_and_the_run_ends_exact(env, spy, caplog):
    data = generate(200, seed=92, messy=False)
    env.seed(data)
    pipeline = env.pipeline(SYNC_PAGE_SIZE="40")
    outcome = pipeline.handle(Message.full_resync("lost-result"))
    outcome = pipeline.handle(outcome.continuation)
    env.query("UPDATE sync_status SET run_job_id = 'expired-job'")  # BigQuery has dropped the result: 404
    jobs_before = spy.call_count
    with caplog.at_level(logging.WARNING):
        while outcome.continuation is not None:
            outcome = pipeline.handle(outcome.continuation)
    assert env.projection() == expected_projection(data)
    assert spy.call_count == jobs_before + 1  # the join evaluated once more, from the stored cursor
    assert [r.event for r in caplog.records if getattr(r, "event", "").startswith("result")] == ["result_gone"]
    assert env.query("SELECT status, last_sync_timestamp FROM sync_status") == [
        ("success", max(dt.datetime.fromisoformat(o["_fivetran_synced"]) for o in data.rows("opportunity")))
    ]


def test_an_idle_tick_issues_only_the_probe(env, spy):
    data = generate(80, seed=93, messy=False)
    env.seed(data)
    env.drain()
    before = env.snapshot()
    _warm(env, spy)
    outcomes = env.drain()
    assert len(outcomes) == 1
    assert spy.call_count == 1  # the probe, nothing else
    columns = set(re.findall(r"\b[a-z]\.`([A-Za-z_]+)`", spy.call_args.args[0]))
    assert columns <= STAMP_COLUMNS
    assert env.snapshot() == before
    pages, read, jobs, *_ = _run_row(env, outcomes[0].run_id)
    assert (pages, read, jobs) == (1, 0, 1)
    assert env.query("SELECT status FROM sync_status") == [("success",)]


def test_a_change_in_one_stream_evaluates_that_stream_only(env, spy):
    data = generate(60, seed=94, messy=False)
    env.seed(data)
    env.drain()
    opp = data.rows("opportunity")[5]
    env.update("opportunity", "id", opp["id"], name="Renamed deal", _fivetran_synced=_iso(BASE_TIME + dt.timedelta(days=1)))
    _warm(env, spy)
    env.drain()
    assert spy.call_count == 2  # the probe and the join; the call links did not change
    assert env.projection() == expected_projection(data)


class LandsAfterProbe:
    """The real source; a row lands in BigQuery right after the probe has looked (a small written wrapper)."""

    def __init__(self, source, land):
        self._source, self._land, self.landed = source, land, False

    def probe(self):
        seen = self._source.probe()
        if not self.landed:
            self._land()
            self.landed = True
        return seen

    def read(self, request):
        return self._source.read(request)

    def shape(self, recorded, *, fresh):
        return self._source.shape(recorded, fresh=fresh)


@pytest.mark.parametrize("busy", [False, True], ids=["idle-probe", "probe-saw-changes"])
def test_a_row_landing_between_probe_and_evaluation_is_not_lost(env, busy):
    from sync.run.pipeline import Pipeline

    data = generate(50, seed=95, messy=False)
    env.seed(data)
    env.drain()
    if busy:  # something else landed before the probe, so this run evaluates the join
        opp = data.rows("opportunity")[1]
        env.update("opportunity", "id", opp["id"], name="Changed first", _fivetran_synced=_iso(BASE_TIME + dt.timedelta(days=1)))
    late = {**data.rows("opportunity")[0], "id": "006BETWEEN000001", "name": "Between probe and join"}
    late["_fivetran_synced"] = _iso(BASE_TIME + dt.timedelta(days=2))

    def land():
        env.append("opportunity", [late])
        data.rows("opportunity").append(late)

    wrapped = LandsAfterProbe(env.source(), land)
    pipeline = Pipeline(env.settings(), wrapped, env.connect)
    outcomes = [pipeline.handle(Message.tick())]
    while outcomes[-1].continuation is not None:
        outcomes.append(pipeline.handle(outcomes[-1].continuation))
    assert wrapped.landed
    # The probe saw nothing, so this tick ended without the join and the row waits for the next
    # one; or the probe saw a change, and the evaluation after it already reads the row.
    assert (late["id"] in env.live_ids()) is busy
    assert (sum(o.rows_read for o in outcomes) == 0) is not busy
    env.drain()  # the next tick
    assert env.projection() == expected_projection(data)  # never lost


def test_cost_is_in_the_run_finished_line_sync_runs_status_and_runs(env, caplog):
    import io
    import json

    from sync.ops import cli

    env.seed(generate(40, seed=96, messy=False))
    with caplog.at_level(logging.INFO, logger="sync.run.runlog"):
        env.drain(SYNC_PAGE_SIZE="15")
    (finished,) = [r for r in caplog.records if getattr(r, "event", None) == "run_finished"]
    # Two schema look-ups, the probe and two evaluations; the emulator reports 0 bytes processed
    # and nothing at all billed, which stays unknown rather than becoming 0.
    assert (finished.bigquery_jobs, finished.bigquery_bytes_processed, finished.bigquery_bytes_billed) == (5, 0, None)
    assert finished.pages == 3

    out = io.StringIO()
    assert cli.main(["runs", "--json"], env.env_vars(), out) == 0
    (run,) = json.loads(out.getvalue())
    assert (run["bigquery_jobs"], run["bigquery_bytes_processed"], run["bigquery_bytes_billed"]) == (5, 0, None)
    assert run["rows_future_stamped"] == 0
    out = io.StringIO()
    assert cli.main(["status"], env.env_vars(), out) == 0
    line = next(x for x in out.getvalue().splitlines() if x.startswith("latest run's BigQuery cost"))
    assert re.fullmatch(r"latest run's BigQuery cost\s+5 jobs, 0\.0 MB processed, unknown billed", line)
