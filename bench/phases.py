"""Where a whole run's wall time goes, phase by phase, measured inside the real pipeline.

Functions at the module seams are wrapped (``mock.patch`` with ``wraps``: the real code runs)
and each slice of wall time is charged to the innermost phase running, so nothing counts
twice. ``Pipeline.handle`` itself is the outermost wrapper: what an invocation spends outside
every named part is its bookkeeping's remainder (planning, logging, glue), and what the run
spends outside every invocation is reported as unattributed.

The same seams exist in the pre-change package (``bench/baseline.py`` runs this module against
it), and a seam a package lacks is skipped, so old and new are measured alike.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

PHASES = ("job wait", "result read", "transform", "COPY + merge", "bookkeeping", "publish")

# (module, attribute path, phase/part): charged to the innermost one running.
SEAMS: tuple[tuple[str, str, str], ...] = (
    ("sync.run.pipeline", "Pipeline.handle", "bookkeeping/other"),
    ("sync.bigquery.results", "evaluate", "job wait/jobs"),
    # The page read, before (BigQuerySource) and after (PageReads, QueryJobs) the source was split;
    # a seam the package under test lacks is reported as missing, not charged.
    ("sync.bigquery.source", "BigQuerySource._page", "result read/rows"),
    ("sync.bigquery.source", "BigQuerySource._all_rows", "result read/rows"),
    ("sync.bigquery.source", "PageReads._page", "result read/rows"),
    ("sync.bigquery.source", "QueryJobs.all_rows", "result read/rows"),
    ("sync.bigquery.results", "read_slice", "result read/job look-up"),
    ("gc", "collect", "result read/gc"),
    ("sync.run.pipeline", "transform_page", "transform/rows"),
    # A page is mapped as the write pulls it: new rows inside their COPY (overlapped with the
    # server's work, charged there), the rest of a page by PageMapping.result before its merge.
    ("sync.rows.transform", "PageMapping.result", "transform/rows"),
    ("sync.postgres.streamed", "copy_unheld", "COPY + merge/new rows, mapped while copied"),
    ("sync.postgres.writer", "_copy_new", "COPY + merge/new rows, mapped while copied"),
    ("sync.postgres.streamed", "record_rejections", "bookkeeping/refusals"),
    ("sync.run.pipeline", "transform_links", "transform/links"),
    ("sync.postgres.sink", "write_rows", "COPY + merge/rows and links"),
    ("sync.postgres.writer", "_merge_and_link", "COPY + merge/rows and links"),
    ("sync.run.state", "acquire_lease", "bookkeeping/lease"),
    ("sync.run.state", "resync_started", "bookkeeping/lease"),
    ("sync.run.state", "fence", "bookkeeping/fence"),
    ("sync.run.state", "record_page", "bookkeeping/state"),
    ("sync.run.sync_runs", "record_page", "bookkeeping/run log"),
    ("sync.run.sync_runs", "run_totals", "bookkeeping/run log"),
    ("sync.run.sync_runs", "expire_rejections", "bookkeeping/run end"),
    ("sync.postgres.refused", "expire", "bookkeeping/run end"),
    ("sync.postgres.refused", "recall", "bookkeeping/refusals"),
    ("sync.postgres.sink", "record_rejections", "bookkeeping/refusals"),
    ("sync.postgres.writer", "record_rejections", "bookkeeping/refusals"),
    ("sync.postgres.purge", "record_page", "bookkeeping/purge ids"),
    ("sync.postgres.purge", "finish", "bookkeeping/purge ids"),
    ("sync.run.pipeline", "_publish", "publish/continuation"),
)


class Clock:
    """Charges wall time to the innermost running part."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[str] = []
        self._since = time.perf_counter()

    def _switch(self) -> float:
        now = time.perf_counter()
        if self._stack:
            part = self._stack[-1]
            self.totals[part] = self.totals.get(part, 0.0) + now - self._since
        self._since = now
        return now

    def wrap(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._switch()
            self._stack.append(part)
            self.calls[part] = self.calls.get(part, 0) + 1
            try:
                return fn(*args, **kwargs)
            finally:
                self._switch()
                self._stack.pop()

        return timed

    def phases(self) -> dict[str, float]:
        out = dict.fromkeys(PHASES, 0.0)
        for part, seconds in self.totals.items():
            phase = part.split("/")[0]
            out[phase] = out.get(phase, 0.0) + seconds
        return out


def _resolve(module: str, path: str) -> tuple[Any, str] | None:
    try:
        owner: Any = importlib.import_module(module)
    except ImportError:
        return None
    *parents, name = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent, None)
    if owner is None or not callable(getattr(owner, name, None)):
        return None
    return owner, name


@contextlib.contextmanager
def measured(clock: Clock) -> Iterator[list[str]]:
    """Every seam this package has wrapped for the block; yields the seams that were missing."""
    missing: list[str] = []
    with contextlib.ExitStack() as stack:
        for module, path, part in SEAMS:
            if not part:
                continue
            found = _resolve(module, path)
            if found is None:
                missing.append(f"{module}.{path}")
                continue
            owner, name = found
            original = getattr(owner, name)
            wrapper = clock.wrap(part, original)
            if isinstance(owner, type):
                # A method: the wrapper must bind ``self`` as the original did.
                def method(self: Any, *a: Any, _w: Callable[..., Any] = wrapper, **k: Any) -> Any:
                    return _w(self, *a, **k)

                stack.enter_context(mock.patch.object(owner, name, method))
            else:
                stack.enter_context(mock.patch.object(owner, name, wrapper))
        yield missing


def commit_timed(clock: Clock, connect: Callable[[], Any]) -> Callable[[], Any]:
    """``connect`` with the connection time and every commit charged to bookkeeping."""

    def timed_connect() -> Any:
        conn = clock.wrap("bookkeeping/connect", connect)()
        if not getattr(conn, "_bench_timed", False):  # a kept connection comes back already wrapped
            conn.commit = clock.wrap("bookkeeping/commit", conn.commit)
            conn.close = clock.wrap("bookkeeping/connect", conn.close)
            conn._bench_timed = True
        return conn

    return timed_connect


def breakdown(clock: Clock, wall: float, pages: int) -> dict[str, Any]:
    """The phases, their parts, what they cover of the wall time, and the fixed cost per page."""
    phases = clock.phases()
    covered = sum(phases.values())
    fixed = phases["bookkeeping"] + phases["publish"]
    return {
        "wall_seconds": wall,
        "phases": phases,
        "parts": dict(sorted(clock.totals.items())),
        "calls": dict(sorted(clock.calls.items())),
        "covered_seconds": covered,
        "covered_share": covered / wall if wall else None,
        "fixed_seconds_per_page": fixed / pages if pages else None,
        "bookkeeping_publish_share": fixed / wall if wall else None,
    }
