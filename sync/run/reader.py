"""The read step: one page of each stream a plan still needs, and where the streams stand after it.

A new run first probes the source (``sync/bigquery/probe.py``): a stream whose tables show nothing new
since the last completed run is not read at all, and a stream whose watermark lies beyond the
source's clock starts again from the beginning. Then each stream's page comes from the run's
single evaluation of its query (``sync/bigquery/source.py``), which the stream's stored result position
points into.

The pipeline and the dry run (``sync/ops/preview.py``) read through the same :class:`Reader`, so a
preview shows exactly the page a tick would write.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sync.bigquery.cursor import Keyset, Stream
from sync.bigquery.probe import Probe, RunStart, decide
from sync.bigquery.results import Cost
from sync.bigquery.source import Source, SourcePage, StreamRead
from sync.bigquery.streams import StreamKind
from sync.rows.transform import Issue
from sync.run.pacing import page_size
from sync.run.page_plan import PagePlan
from sync.run.runs import TRIGGER_FULL

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PageRead:
    """Rows read for one plan, and each stream after them.

    ``future`` holds a degraded ``future_stamp`` issue per row stamped beyond the source clock's
    cap (they are among the rows, written like any other); ``future_starts`` says this page
    holds the first of them in a stream's result, so the run warns once, and ``future_total``
    is then how many that result holds.
    """

    opportunity_rows: Sequence[dict[str, Any]]
    link_rows: Sequence[dict[str, Any]]
    opportunities: Stream
    links: Stream
    future: Sequence[Issue] = ()
    future_starts: bool = False
    future_total: int = 0
    cost: Cost = field(default_factory=Cost)
    probe: Probe | None = None
    start: RunStart = field(default_factory=RunStart)
    # Why the opportunity ids this page read cannot complete a full resync's purge list.
    ids_incomplete: str | None = None

    @property
    def run_done(self) -> bool:
        return self.opportunities.done and self.links.done

    @property
    def idle(self) -> bool:
        """A new run that found nothing landed in any stream."""
        return self.start.skip == frozenset(StreamKind)


class Reader(Protocol):
    """Reads the page a plan asks for, stopping early when ``deadline`` (monotonic) passes."""

    def read(self, plan: PagePlan, deadline: float) -> PageRead: ...


class SourceReader:
    """:class:`Reader` over a :class:`Source`: a probe on a run's first page, then one slice per stream."""

    def __init__(self, source: Source, page_size: int, budget_mib: float | None = None) -> None:
        self._source = source
        self._page_size = page_size
        self._budget_mib = budget_mib

    def read(self, plan: PagePlan, deadline: float) -> PageRead:
        cost = Cost()
        size = page_size(self._page_size, plan.page_size_limit)
        streams = {StreamKind.OPPORTUNITIES: plan.opportunities, StreamKind.CALL_LINKS: plan.links}
        probe, start = None, RunStart()
        if plan.new_run:
            probe = self._source.probe()
            if probe is not None:
                cost.add(probe.cost)
                start = decide(probe, full=plan.trigger == TRIGGER_FULL, watermarks=plan.watermarks, committed=plan.source_marks)
                streams = _started(streams, start, plan)
        rows: dict[StreamKind, list[dict[str, Any]]] = {kind: [] for kind in StreamKind}
        future: list[Issue] = []
        future_starts, future_total, ids_incomplete = False, 0, None
        for kind, stream in streams.items():
            if stream.done:
                continue
            page = self._source.read(
                StreamRead(kind, stream.cursor, stream.upper_bound, stream.result, size, deadline, self._budget_mib)
            )
            if page is None:  # no such table in the source: nothing to read, now or later in the run
                streams[kind] = stream.finished()
                continue
            cost.add(page.cost)
            rows[kind] = page.rows
            streams[kind] = stream.after_page(page.last, page.upper_bound, exhausted=page.exhausted, result=page.position)
            future += _future_issues(kind, page)
            future_starts = future_starts or page.future_starts
            future_total += page.future_total
            if kind is StreamKind.OPPORTUNITIES:
                ids_incomplete = _ids_incomplete(page)
        return PageRead(
            rows[StreamKind.OPPORTUNITIES],
            rows[StreamKind.CALL_LINKS],
            streams[StreamKind.OPPORTUNITIES],
            streams[StreamKind.CALL_LINKS],
            future,
            future_starts,
            future_total,
            cost,
            probe,
            start,
            ids_incomplete,
        )


def _started(streams: dict[StreamKind, Stream], start: RunStart, plan: PagePlan) -> dict[StreamKind, Stream]:
    """A new run's streams after its probe: repaired ones from the beginning, unchanged ones done."""
    started = dict(streams)
    for kind in (k for k in StreamKind if k in start.repair):
        log.warning(
            "the %s watermark %s lies beyond the source's clock; re-reading that stream from the beginning",
            kind.value,
            plan.watermarks.get(kind),
            extra={"event": "watermark_repaired", "run_id": str(plan.run_id), "stream": kind.value},
        )
        started[kind] = Stream(Keyset.start())
    for kind in start.skip:
        started[kind] = started[kind].finished()
    if start.skip == frozenset(StreamKind):
        log.info(
            "nothing landed since the last run; the join was not evaluated",
            extra={"event": "no_changes", "run_id": str(plan.run_id)},
        )
    return started


def _future_issues(kind: StreamKind, page: SourcePage) -> list[Issue]:
    """A degraded issue per future-stamped row: recorded in sync_rejections like any degradation."""
    bound = page.upper_bound.isoformat() if page.upper_bound else None
    if kind is StreamKind.OPPORTUNITIES:
        return [_future(r.get("id"), {"change_stamp": _iso(r.get("change_stamp")), "upper_bound": bound}) for r in page.future]
    return [
        _future(r.get("object_id"), {"call_id": _text(r.get("call_id")), "stamp": _iso(r.get("stamp")), "upper_bound": bound})
        for r in page.future
    ]


def _future(source_id: Any, values: dict[str, Any]) -> Issue:
    return Issue(_text(source_id), "degraded", "future_stamp", values)


def _ids_incomplete(page: SourcePage) -> str | None:
    if page.reevaluated:
        # A row placed after the cursor can fall behind it between two evaluations (its stamp
        # drops when a joined row is removed outright), and then this run never reads it.
        return "the run's result was evaluated again mid-run, so a row whose stamp fell behind the cursor may be unseen"
    return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _iso(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else _text(value)
