"""Reads from BigQuery through the real client (or the emulator behind the same API).

A run costs at most three jobs however many pages it has: the probe (stamp columns only), and
one evaluation per stream whose result every page then reads a slice of (:mod:`sync.bigquery.results`).
The schema is discovered once per process from ``INFORMATION_SCHEMA.COLUMNS`` and cached: a
Cloud Function instance serves many invocations, and each look-up is a billed query.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import logging
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sync.bigquery import discovery, results, slices
from sync.bigquery.cursor import Keyset
from sync.bigquery.probe import CLOCK_SKEW, Mark, Probe
from sync.bigquery.results import Cost, JobRef, ResultGone, ResultPosition
from sync.bigquery.shape import Shape, compare
from sync.bigquery.source_sql import SourceTables, link_result_sql, opportunity_result_sql, probe_sql
from sync.bigquery.streams import SHAPES, StreamKind, split_link_key
from sync.core.config import Settings
from sync.core.errors import SourceSchemaError, SourceShapeError
from sync.rows.columns import Table, quote, quote_project, tables_from_information_schema

if TYPE_CHECKING:
    from google.cloud import bigquery

log = logging.getLogger(__name__)

# A new run looks the schema up again after this long, so a table that appeared turns its
# feature on within minutes; two INFORMATION_SCHEMA queries bill 10 MB each.
SCHEMA_MAX_AGE = 300.0

# The page limit of a whole read: it never ends a slice early (BigQuery INT64).
_EVERY_ROW = 2**62
# Rows read at a time beyond a page's limit, when the page would end on rows whose key cannot be
# the cursor (sync/bigquery/slices.py): such rows are rare, and a few per read keeps the read small.
_TAIL_ROWS = 16


@dataclass(frozen=True)
class StreamRead:
    """Read the next page of a stream: after ``after``, within the run's bound, from ``position``."""

    stream: StreamKind
    after: Keyset
    upper_bound: dt.datetime | None
    position: ResultPosition | None
    limit: int
    deadline: float
    # What the page's rows may cost at peak (sync/core/memory.py); None: rows alone bound it.
    budget_mib: float | None = None


@dataclass
class SourcePage:
    """One page of a stream.

    ``rows`` are every result row the page took, future-stamped ones included, in cursor order;
    ``last`` is the last row within the bound, where the cursor moves. ``position`` is where the
    next page starts (None once ``exhausted``).
    """

    rows: list[dict[str, Any]]
    upper_bound: dt.datetime | None
    last: Keyset | None = None
    exhausted: bool = True
    truncated: bool = False
    position: ResultPosition | None = None
    future: list[dict[str, Any]] = field(default_factory=list)
    future_starts: bool = False
    future_total: int = 0
    cap: dt.datetime | None = None
    reevaluated: bool = False
    cost: Cost = field(default_factory=Cost)


@dataclass
class SourceStats:
    """Totals for this process: what benchmarks and operators compare."""

    jobs: int = 0
    schema_lookups: int = 0
    # Seconds waiting for jobs to run, and reading result rows (slices).
    job_seconds: float = 0.0
    rows: int = 0
    seconds: float = 0.0


class Source(Protocol):
    """Where opportunities and links come from; BigQuery in production and in tests."""

    def shape(self, recorded: Shape | None, *, fresh: bool) -> Shape: ...

    def probe(self) -> Probe | None: ...

    def read(self, request: StreamRead) -> SourcePage | None: ...


def make_client(settings: Settings) -> bigquery.Client:
    """A BigQuery client; anonymous against ``BIGQUERY_API_ENDPOINT`` (the local emulator)."""
    from google.cloud import bigquery

    if settings.bigquery_api_endpoint:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(
            project=settings.bigquery_project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=settings.bigquery_api_endpoint),
            location=settings.bigquery_location,
        )
    return bigquery.Client(project=settings.bigquery_project, location=settings.bigquery_location)


def _collect_cycles() -> None:
    """A full collection, to free the slice's raw JSON held in a reference cycle (see ``_page``).

    Cheap when the process froze its long-lived objects out of collections
    (:func:`sync.run.runtime.freeze_long_lived`): it then walks only what was allocated since.
    """
    gc.collect()


class BigQuerySource:
    """:class:`Source` over Fivetran's Salesforce and Gong datasets.

    A façade over three collaborators, one per job: :class:`QueryJobs` runs and counts every
    query, :class:`SchemaCache` discovers the tables once per process, :class:`PageReads` reads
    a stream's pages from the run's result. The probe is :func:`read_probe`.
    """

    def __init__(self, client: bigquery.Client, settings: Settings) -> None:
        self.stats = SourceStats()
        self.jobs = QueryJobs(client, settings.bigquery_location, self.stats)
        self._schema = SchemaCache(self.jobs, settings)
        self._pages = PageReads(self.jobs)

    def tables(self, cost: Cost | None = None) -> SourceTables:
        """Resolved source tables, discovered once; the look-ups count in ``cost``."""
        return self._schema.tables(cost)

    def shape(self, recorded: Shape | None, *, fresh: bool) -> Shape:
        """The source's shape under the replica's ``recorded`` one, which later reads then follow.

        ``fresh`` (a new run) discovers again when the cached look-up is older than
        :data:`SCHEMA_MAX_AGE`, so a table that appeared is seen within minutes.

        Raises:
            SourceShapeError: a recorded table or column is missing (retryable).
        """
        with self._readable():
            return self._schema.resolve(recorded, fresh=fresh).shape()

    def probe(self) -> Probe:
        """The run-start probe (:func:`read_probe`); its jobs count in the probe's own cost."""
        cost = Cost()
        with self._readable():
            return read_probe(self.jobs, self.tables(cost), cost)

    def read(self, request: StreamRead) -> SourcePage | None:
        """The next page of a stream (:meth:`PageReads.read`); None when the stream has no table."""
        cost = Cost()
        with self._readable():
            return self._pages.read(request, self.tables(cost), cost)

    @contextlib.contextmanager
    def _readable(self) -> Iterator[None]:
        """A table the cached look-up holds but BigQuery cannot find or read: discover again next time.

        Raised as :class:`SourceShapeError` (retryable), naming what BigQuery named: a table
        dropped by a connector re-sync or a permission lost for an hour passes, and meanwhile
        nothing is written.
        """
        from google.api_core import exceptions as gexc

        try:
            yield
        except (gexc.NotFound, gexc.Forbidden) as err:
            reasons = {str(e.get("reason")) for e in (err.errors or []) if isinstance(e, dict)}
            if isinstance(err, gexc.Forbidden) and reasons and "accessDenied" not in reasons:
                raise  # quota and rate limits are classified as they are
            self._schema.forget()
            msg = f"BigQuery cannot read a source table ({err.code}): {err.message}"
            raise SourceShapeError(msg, [str(err.message)]) from err

    def whole(self, stream: StreamKind, *, slice_rows: int, deadline: float, cost: Cost) -> Iterator[list[dict[str, Any]]]:
        """Every row of a stream's run query, in slices (:meth:`PageReads.whole`); for ``verify``."""
        return self._pages.whole(stream, self.tables(cost), slice_rows=slice_rows, deadline=deadline, cost=cost)


class QueryJobs:
    """Every BigQuery job of this process goes through here, so each is counted once."""

    def __init__(self, client: bigquery.Client, location: str | None, stats: SourceStats) -> None:
        self.client = client
        self._location = location
        self.stats = stats

    def evaluate(self, sql: str, params: list[Any], deadline: float, cost: Cost) -> JobRef:
        jobs, started = cost.jobs, time.monotonic()
        try:
            return results.evaluate(self.client, sql, params, location=self._location, deadline=deadline, cost=cost)
        finally:
            self.stats.jobs += cost.jobs - jobs
            self.stats.job_seconds += time.monotonic() - started

    def all_rows(self, sql: str, params: list[Any], deadline: float, cost: Cost) -> list[dict[str, Any]]:
        """A small query read whole (schema look-ups, the probe)."""
        job = self.evaluate(sql, params, deadline, cost)
        return list(results.read_slice(self.client, job, 0, None, deadline).rows)


class SchemaCache:
    """The source tables, discovered from ``INFORMATION_SCHEMA.COLUMNS`` and kept for the process.

    Kept under the replica's recorded shape (:meth:`resolve`); looked up again when that shape
    changes, when a new run finds the look-up older than :data:`SCHEMA_MAX_AGE`, and after a
    read found a table gone (:meth:`forget`).
    """

    def __init__(self, jobs: QueryJobs, settings: Settings) -> None:
        self._jobs = jobs
        self._settings = settings
        self._tables: SourceTables | None = None
        self._recorded: Shape | None = None
        self._at = 0.0
        self._lock = threading.Lock()
        # Look-ups made by resolve(), which has no run to bill yet: the next tables(cost) carries them.
        # A look-up through tables() without a cost (a warm-up) is billed nowhere, as before.
        self._unbilled = Cost()

    def tables(self, cost: Cost | None = None) -> SourceTables:
        """Resolved source tables under the shape last given to :meth:`resolve`; the look-ups count in ``cost``."""
        with self._lock:
            tables = self._resolved(cost)
            if cost is not None:
                cost.add(self._unbilled)
                self._unbilled = Cost()
            return tables

    def resolve(self, recorded: Shape | None, *, fresh: bool, cost: Cost | None = None) -> SourceTables:
        """Resolved source tables under ``recorded``; see the class docstring for when it looks again.

        The look-up is compared with ``recorded`` without querying again; only a look-up that lacks
        something recorded is repeated before :class:`SourceShapeError` is raised, so a stale cache
        never fails a run and a healthy one costs no query.
        """
        with self._lock:
            old = fresh and time.monotonic() - self._at > SCHEMA_MAX_AGE
            pinned = recorded is not None and self._tables is not None and self._tables.origin != recorded.origin
            self._recorded = recorded
            if old or pinned:
                self._tables = None
            # Billed to the run that reads next (tables(cost)), since no run is known here yet.
            spent = cost if cost is not None else self._unbilled
            tables = self._resolved(spent)
            if recorded is not None and compare(recorded, tables.shape()).missing:
                self._tables = None
                tables = self._resolved(spent)
            return tables

    def forget(self) -> None:
        with self._lock:
            self._tables = None

    def _resolved(self, cost: Cost | None) -> SourceTables:
        if self._tables is None:
            spent = cost if cost is not None else Cost()
            lookup = lambda dataset: self._dataset_tables(dataset, spent)  # noqa: E731
            self._tables = discovery.resolve(self._settings, lookup, self._recorded)
            self._at = time.monotonic()
        return self._tables

    def _dataset_tables(self, dataset: str, cost: Cost) -> dict[str, Table]:
        from google.api_core import exceptions as gexc

        sql = (
            "SELECT table_name, column_name, data_type FROM "
            f"{quote_project(self._settings.bigquery_project)}.{quote(dataset)}.INFORMATION_SCHEMA.COLUMNS "
            "ORDER BY table_name, ordinal_position"
        )
        self._jobs.stats.schema_lookups += 1
        try:
            rows = self._jobs.all_rows(sql, [], time.monotonic() + 60, cost)
        except gexc.NotFound:
            log.warning("dataset %s not found in project %s", dataset, self._settings.bigquery_project)
            return {}
        return tables_from_information_schema(dataset, ((r["table_name"], r["column_name"], r["data_type"]) for r in rows))


def _log_full(request: StreamRead, taken: slices.Taken, budget: slices.Budget | None) -> None:
    log.info(
        "the %s page ended at its memory budget after %d rows",
        request.stream.value,
        len(taken.rows),
        extra={
            "event": "page_memory_budget",
            "stream": request.stream.value,
            "rows": len(taken.rows),
            "page_size": request.limit,
            "budget_mib": request.budget_mib,
            "rows_mib": round(budget.spent, 1) if budget else None,
        },
    )


def read_probe(jobs: QueryJobs, tables: SourceTables, cost: Cost) -> Probe:
    """Marks of every table of the streams a probe can judge, and the source's capped clock.

    A stream can be judged when every table it reads carries ``_fivetran_synced``
    (:mod:`sync.bigquery.probe`); the others are read by every run, so their tables are not probed.
    """
    from google.cloud import bigquery

    judged = {
        stream: pairs
        for stream, pairs in tables.stream_tables().items()
        if pairs and all(t.find("_fivetran_synced") for _, t in pairs)
    }
    named = [pair for pairs in judged.values() for pair in pairs]
    params = [bigquery.ScalarQueryParameter("skew_seconds", "INT64", int(CLOCK_SKEW.total_seconds()))]
    rows = jobs.all_rows(probe_sql([t for _, t in named], tables.project), params, time.monotonic() + 60, cost)
    clock = next((r for r in rows if r["part"] == -1), None)
    if clock is None:
        msg = "the probe query returned no clock row; the source could not be read"
        raise SourceSchemaError(msg)
    return Probe(
        cap=clock["cap"],
        marks={
            named[int(r["part"])][0]: Mark(r["latest"], int(r["row_count"]), int(r["active_count"]), int(r["future_count"]))
            for r in rows
            if r["part"] >= 0
        },
        tables={stream: tuple(name for name, _ in pairs) for stream, pairs in judged.items()},
        eligible=frozenset(judged),
        cost=cost,
    )


class PageReads:
    """A stream's pages, read as slices of the run's one evaluation of its query."""

    def __init__(self, jobs: QueryJobs) -> None:
        self._jobs = jobs
        self.stats = jobs.stats
        # The average cost of a row on each stream's last page: how much of the result to read at first.
        self._row_mib: dict[StreamKind, float] = {}

    def read(self, request: StreamRead, tables: SourceTables, cost: Cost) -> SourcePage | None:
        """The next page of a stream, from the run's result; None when the stream has no table.

        The run's first page evaluates the stream's query; later pages read slices of that
        result. A result that is gone or does not line up with the cursor is evaluated again
        from the stored cursor with the run's frozen bound.
        """
        if request.stream is StreamKind.CALL_LINKS and tables.links is None:
            return None
        if request.position is not None:
            try:
                return self._page(request, request.position, cost, starts_result=False)
            except ResultGone as gone:
                log.warning(
                    "evaluating the run's %s query again from the stored cursor: %s",
                    request.stream.value,
                    gone,
                    extra={"event": "result_gone", "stream": request.stream.value, "job_id": request.position.job.job_id},
                )
        job = self._jobs.evaluate(self._sql(request.stream, tables), self._params(request), request.deadline, cost)
        page = self._page(request, ResultPosition(job, 0), cost, starts_result=True)
        page.reevaluated = request.position is not None
        return page

    def _page(self, request: StreamRead, position: ResultPosition, cost: Cost, *, starts_result: bool) -> SourcePage:
        """Read the page at ``position``.

        Raises:
            ResultGone: the result is gone, or the row before the slice shows the stored offset
                does not line up with the cursor.
        """
        with_predecessor = position.offset > 0
        start = position.offset - 1 if with_predecessor else position.offset
        started = time.monotonic()
        rows = request.limit + int(with_predecessor)
        budget = None
        if request.budget_mib is not None:
            budget = slices.Budget(request.budget_mib, self._row_mib.get(request.stream))
        taken = slices.take(
            _rows(self._jobs.client, position.job, start, rows, request.deadline, budget),
            SHAPES[request.stream],
            after=request.after,
            upper_bound=request.upper_bound,
            starts_result=starts_result,
            with_predecessor=with_predecessor,
            limit=request.limit,
            stop=lambda: time.monotonic() > request.deadline,
            budget=budget,
        )
        self.stats.rows += taken.consumed
        self.stats.seconds += time.monotonic() - started
        # The client's QueryJob sits in a reference cycle that holds the slice's raw JSON, about
        # twice the page's own rows. Collect it now: left to the next full collection, it added
        # ~50 MB to the peak of a run with pages of 10,000 rows (bench/README.md).
        _collect_cycles()
        if budget is not None and budget.row_mib is not None:
            self._row_mib[request.stream] = budget.row_mib
        if taken.full:
            _log_full(request, taken, budget)
        if taken.misaligned:
            msg = f"row {start} of job {position.job.job_id} lies after the cursor {request.after}: the offset is misaligned"
            raise ResultGone(msg)
        offset = position.offset + taken.consumed
        # As with a keyset page: a slice that ran out proves the result is read.
        exhausted = taken.ended
        return SourcePage(
            rows=taken.rows,
            upper_bound=taken.upper_bound,
            last=taken.last,
            exhausted=exhausted,
            truncated=taken.truncated,
            position=None if exhausted else ResultPosition(position.job, offset),
            future=taken.future,
            future_starts=taken.future_starts,
            future_total=taken.future_total or 0,
            cap=taken.cap,
            cost=cost,
        )

    def whole(
        self, stream: StreamKind, tables: SourceTables, *, slice_rows: int, deadline: float, cost: Cost
    ) -> Iterator[list[dict[str, Any]]]:
        """Every row of a stream's run query, evaluated once from the start with no bound, in slices.

        ``python -m sync verify`` reads the source through this: the run's own SQL and
        parameters, with no frozen bound and every future-stamped row, then slices of
        ``slice_rows`` through :func:`results.read_slice`, so memory holds one slice at a
        time. Yields nothing when the stream has no table.
        """
        if stream is StreamKind.CALL_LINKS and tables.links is None:
            return
        request = StreamRead(stream, Keyset.start(), None, None, _EVERY_ROW, deadline)
        job = self._jobs.evaluate(self._sql(stream, tables), self._params(request), deadline, cost)
        start = 0
        while True:
            rows = list(results.read_slice(self._jobs.client, job, start, slice_rows, deadline).rows)
            _collect_cycles()  # the QueryJob cycle that holds the slice's raw JSON (see _page)
            if rows:
                yield rows
            if len(rows) < slice_rows:
                return
            start += len(rows)

    def _sql(self, stream: StreamKind, tables: SourceTables) -> str:
        return opportunity_result_sql(tables) if stream is StreamKind.OPPORTUNITIES else link_result_sql(tables)

    def _params(self, request: StreamRead) -> list[Any]:
        from google.cloud import bigquery

        p = bigquery.ScalarQueryParameter
        params = [
            p("after_stamp", "TIMESTAMP", request.after.stamp),
            p("upper_bound", "TIMESTAMP", request.upper_bound),
            p("skew_seconds", "INT64", int(CLOCK_SKEW.total_seconds())),
        ]
        if request.stream is StreamKind.OPPORTUNITIES:
            return [*params, p("after_id", "STRING", request.after.key)]
        call_id, object_id = split_link_key(request.after.key)
        return [
            *params,
            p("after_call", "STRING", call_id),
            p("after_object", "STRING", object_id),
            p("object_type", "STRING", "opportunity"),
        ]


def _rows(
    client: bigquery.Client, job: JobRef, start: int, count: int, deadline: float, budget: slices.Budget | None
) -> Iterator[dict[str, Any]]:
    """Rows ``start`` .. ``start + count - 1`` of the result, then further rows for as long as they are pulled.

    With a ``budget``, each read asks for the rows that still fit it at the weight seen so
    far, so a page of heavy rows is not fetched whole only to end early: the client holds a
    read's raw JSON until it is done. A page pulls past its slice only to reach a row that
    can be its cursor (``slices.take``).
    """
    end = start + count
    while start < end:
        size = end - start if budget is None else min(end - start, budget.rows_left())
        read = yield from _slice(client, job, start, size, deadline)
        if read < size:
            return
        start += read
    while True:
        read = yield from _slice(client, job, start, _TAIL_ROWS, deadline)
        if read < _TAIL_ROWS:
            return
        start += read


def _slice(client: bigquery.Client, job: JobRef, start: int, count: int, deadline: float) -> Generator[dict[str, Any], None, int]:
    """Yield a slice's rows as they are pulled; return how many there were."""
    read = 0
    for read, row in enumerate(results.read_slice(client, job, start, count, deadline).rows, start=1):  # noqa: B007
        yield row
    return read
