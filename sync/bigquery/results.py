"""A run's query result in BigQuery: evaluated once, then read slice by slice, nothing else billed.

BigQuery keeps a query's result in an anonymous table for about 24 hours, and reading it back
(``jobs.getQueryResults``) bills no bytes. So a run evaluates each stream's query once, stores
the job's reference (project, location, id) with its cursor, and every page reads its slice
of that result.

Each slice is read through a **fresh** ``client.get_job(...)`` and ``result(start_index=N,
max_results=M)``. That is the one call that pages correctly on real BigQuery and on the local
emulator alike: ``list_rows`` on the anonymous destination is free on BigQuery but answers 404
on the emulator, and ``result(start_index=...)`` on a job object that already fetched rows
starts again at row 0.

A result can disappear: it expired, the job id is unknown, or the job is looked up in another
location (jobs are regional). All three answer 404; :class:`ResultGone` says so and the
caller evaluates again from its stored cursor.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sync.bigquery import cells

if TYPE_CHECKING:
    from google.cloud import bigquery


@dataclass(frozen=True)
class JobRef:
    """Where a query job lives; a job id alone is not enough because jobs are regional."""

    project: str
    location: str | None
    job_id: str


@dataclass(frozen=True)
class ResultPosition:
    """How far a stream has read its run's result: ``offset`` rows were consumed by committed pages."""

    job: JobRef
    offset: int


@dataclass
class Cost:
    """BigQuery jobs created and what they billed. A byte total is None once any job did not say."""

    jobs: int = 0
    bytes_processed: int | None = 0
    bytes_billed: int | None = 0

    def add_job(self, processed: int | None, billed: int | None) -> None:
        self.jobs += 1
        self.bytes_processed = _plus(self.bytes_processed, processed)
        self.bytes_billed = _plus(self.bytes_billed, billed)

    def add(self, other: Cost) -> None:
        self.jobs += other.jobs
        self.bytes_processed = _plus(self.bytes_processed, other.bytes_processed)
        self.bytes_billed = _plus(self.bytes_billed, other.bytes_billed)


def _plus(total: int | None, more: int | None) -> int | None:
    return None if total is None or more is None else total + more


class ResultGone(Exception):
    """The stored result cannot be read any more (expired, unknown job, other location)."""


@dataclass
class Slice:
    """Rows of a result from ``start``, read lazily."""

    rows: Iterator[dict[str, Any]]
    start: int


def evaluate(
    client: bigquery.Client,
    sql: str,
    params: Sequence[Any],
    *,
    location: str | None,
    deadline: float,
    cost: Cost,
) -> JobRef:
    """Run ``sql`` once, wait for it, count it in ``cost``; the caller reads it with :func:`read_slice`."""
    from google.cloud import bigquery

    remaining = _remaining(deadline)
    config = bigquery.QueryJobConfig(query_parameters=list(params), use_legacy_sql=False)
    config.job_timeout_ms = int(remaining * 1000)
    job = client.query(sql, job_config=config, location=location, timeout=remaining)
    try:
        # max_results=0: wait for the job without fetching rows on this job object.
        job.result(timeout=remaining, max_results=0)
    finally:
        if job.done():
            cost.add_job(job.total_bytes_processed, job.total_bytes_billed)
    return JobRef(job.project, job.location, str(job.job_id))


def read_slice(client: bigquery.Client, ref: JobRef, start: int, count: int | None, deadline: float) -> Slice:
    """Rows ``start`` .. ``start + count - 1`` (all when ``count`` is None) of a finished job's result.

    Raises:
        ResultGone: the result is no longer there (404), so it must be evaluated again.
    """
    from google.api_core import exceptions as gexc
    from google.cloud import bigquery

    remaining = _remaining(deadline)
    try:
        job = client.get_job(ref.job_id, project=ref.project, location=ref.location, timeout=remaining)
        if not isinstance(job, bigquery.QueryJob):
            msg = f"job {ref.job_id} is a {type(job).__name__}, not a query; its result cannot be paged"
            raise ResultGone(msg)
        iterator = job.result(start_index=start, max_results=count, page_size=count, timeout=remaining)
    except gexc.NotFound as err:
        msg = f"result of job {ref.project}:{ref.location}.{ref.job_id} is gone: {err.message}"
        raise ResultGone(msg) from err
    return Slice(_rows(iterator), start)


def _rows(iterator: Any) -> Iterator[dict[str, Any]]:
    from google.api_core import exceptions as gexc

    try:
        convert = cells.row_converter(iterator.schema)
        if convert is not None:
            names = [field.name for field in iterator.schema]
            # The raw page, not its Row objects: each column converted by its own function.
            for page in iterator.pages:
                for raw in page.raw_page.get("rows", ()):
                    yield dict(zip(names, convert(raw["f"]), strict=True))
            return
        names_seen: list[str] | None = None
        for row in iterator:
            if names_seen is None:
                names_seen = list(row.keys())
            # Row.items() deep-copies every value; indexing a Row does not.
            yield dict(zip(names_seen, row, strict=True))
    except gexc.NotFound as err:
        # The rows are fetched on first iteration: an expired table shows up here.
        msg = f"result rows are gone: {err.message}"
        raise ResultGone(msg) from err


def _remaining(deadline: float) -> float:
    # A job that is already running gets a few seconds even when the page budget is spent.
    return max(5.0, deadline - time.monotonic())
