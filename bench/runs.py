"""Whole runs through the BigQuery emulator: BigQuery jobs per run, full-run speed old vs new, the idle tick.

Runs go through the real :class:`sync.run.pipeline.Pipeline`, in process, page after page as
``python -m sync run --until-done`` drains them. The old read path is the bench-only
:class:`bench.legacy.PerPageSource` plugged into the same pipeline, so the two differ in how
pages are read and in nothing else. Jobs are counted twice: by the run itself (``sync_runs``)
and at the client (``client.query`` wrapped, not replaced).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any
from unittest import mock

from bench import phases
from bench.emulated import frozen
from bench.legacy import PerPageSource
from bench.pg import fresh_database, query
from sync.bigquery.source import BigQuerySource
from sync.core.config import Settings
from sync.core.messages import Message
from sync.postgres.db import connect_url
from sync.run.pipeline import Pipeline

# Columns a query may read and still be "stamp columns only": Fivetran's write stamps and the
# source's own last-modified times.
STAMP_COLUMNS = frozenset({"_fivetran_synced", "_fivetran_start", "_fivetran_end", "last_modified_date", "system_modstamp"})


def _drain(pipeline: Pipeline, first: Message) -> int:
    """Page after page, as Pub/Sub would deliver the continuations (published by the pipeline)."""
    outcome = pipeline.handle(first)
    pages = 1
    while outcome.continuation is not None:
        outcome = pipeline.handle(outcome.continuation)
        pages += 1
    return pages


def _last_run(url: str) -> dict[str, Any]:
    conn = connect_url(url)
    try:
        row = query(
            conn,
            "SELECT pages, rows_read, bigquery_jobs, bigquery_bytes_processed, bigquery_bytes_billed, status"
            " FROM sync_runs ORDER BY started_at DESC LIMIT 1",
        )[0]
        stored = query(conn, "SELECT count(*) FROM opportunities")[0][0]
    finally:
        conn.close()
    names = ("pages", "rows_read", "bigquery_jobs", "bigquery_bytes_processed", "bigquery_bytes_billed", "status")
    return {**dict(zip(names, row, strict=True)), "rows_stored": int(stored)}


def one_run(
    bq: Any, env: dict[str, str], *, legacy: bool = False, first: Message | None = None, publisher: Any = None
) -> dict[str, Any]:
    """A run on a fresh source object (so its schema look-ups count), timed end to end and by phase."""
    settings = Settings.from_env(env)
    source = frozen(BigQuerySource(bq, settings))
    read: Any = PerPageSource(source) if legacy else source
    clock = phases.Clock()
    pipeline = _pipeline(settings, read, lambda: connect_url(env["DATABASE_URL"]), publisher, clock)
    with mock.patch.object(bq, "query", wraps=bq.query) as spy, phases.measured(clock) as missing:
        started = time.perf_counter()
        invocations = _drain(pipeline, first or Message.full_resync(f"bench-{time.time_ns()}"))
        seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "invocations": invocations,
        "jobs_at_client": spy.call_count,
        "schema_lookups": source.stats.schema_lookups,
        # Waiting for BigQuery (the emulator) to run jobs; the rest is reading rows and writing them.
        "job_seconds": source.stats.job_seconds,
        "breakdown": phases.breakdown(clock, seconds, invocations),
        "seams_missing": missing,
        **_last_run(env["DATABASE_URL"]),
    }


def _pipeline(settings: Settings, read: Any, connect: Callable[[], Any], publisher: Any, clock: phases.Clock) -> Pipeline:
    """The pipeline as ``sync/run/runtime.py`` builds it: one kept connection across invocations."""
    try:
        from sync.postgres.idle import IdleConnection
    except ImportError:  # a baseline from before the kept connection opens one per invocation
        return Pipeline(settings, read, phases.commit_timed(clock, connect), publisher)
    idle = IdleConnection(connect)
    release = lambda conn, failed: idle.give_back(conn, failed=failed)  # noqa: E731
    return Pipeline(settings, read, phases.commit_timed(clock, idle.take), publisher, release=release)


def idle_tick(bq: Any, env: dict[str, str]) -> dict[str, Any]:
    """One tick after a completed run with nothing landed since: which queries, reading which columns."""
    settings = Settings.from_env(env)
    source = BigQuerySource(bq, settings)
    source.tables()  # a warm instance: the schema is cached
    pipeline = Pipeline(settings, source, lambda: connect_url(env["DATABASE_URL"]))
    with mock.patch.object(bq, "query", wraps=bq.query) as spy:
        _drain(pipeline, Message.tick())
    columns = [set(re.findall(r"\b[a-z]\.`([A-Za-z_]+)`", call.args[0])) for call in spy.call_args_list]
    read = set().union(*columns) if columns else set()
    return {
        "queries": spy.call_count,
        "columns_read": sorted(read),
        "non_stamp_columns": sorted(read - STAMP_COLUMNS),
        **_last_run(env["DATABASE_URL"]),
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median wall time (the lower middle of an even count)."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    return ordered[(len(ordered) - 1) // 2]


def run(
    bq: Any,
    big: Callable[[str], dict[str, str]],
    small: Callable[[str], dict[str, str]],
    *,
    rounds: int = 1,
    baseline: Callable[[dict[str, str]], dict[str, Any]] | None = None,
    publisher: Any = None,
    per_page: bool = False,
) -> dict[str, Any]:
    """Every measurement; ``big(url)`` / ``small(url)`` give the environment for the seeded datasets.

    Each round runs today's package and then, in a child interpreter, the baseline's
    (``bench/baseline.py``) on the same dataset, so load from other processes hits both alike.
    """
    results: dict[str, Any] = {"new_rounds": [], "base_rounds": []}
    for _ in range(rounds):
        with fresh_database() as url:
            results["new_rounds"].append(one_run(bq, big(url), publisher=publisher))
            results["idle_tick"] = idle_tick(bq, big(url))
        if baseline is not None:
            results["base_rounds"].append(baseline(big("")))
    results["new"] = median_run(results["new_rounds"])
    if results["base_rounds"]:
        results["base"] = median_run(results["base_rounds"])
    if per_page:
        with fresh_database() as url:
            results["old"] = one_run(bq, big(url), legacy=True, publisher=publisher)
    with fresh_database() as url:
        results["one_page"] = one_run(bq, small(url), publisher=publisher)
    return results
