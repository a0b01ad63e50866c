"""Write path: our transform + write_page + commit, the COPY limit, and dlt's merge, side by side.

All three load the same rows into a fresh database each time, so every number is a first
load of 100k rows. Rates are source rows per second of wall time.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from bench.pg import footprint, fresh_database
from sync.postgres.db import Connection, connect_url
from sync.rows import encoding, stored
from sync.rows.stored import OpportunityRow, Role
from sync.rows.transform import transform_page

RUN_ID = "00000000-0000-0000-0000-000000000001"


def _writer() -> Any:
    """The page writer of the package under test: ``sync/postgres/writer.py``, or the sink of a
    package from before it (the baseline), packaged or flat."""
    for name in ("sync.postgres.writer", "sync.postgres.sink", "sync.sink"):
        with contextlib.suppress(ImportError):
            return importlib.import_module(name)
    msg = "no page writer found in the package under test"
    raise ImportError(msg)


def _write_one(conn: Connection, source_rows: Sequence[dict[str, Any]]) -> Any:
    """One page as the pipeline writes it: mapped as the write pulls it, or, in a package whose
    write takes rows mapped beforehand, mapped first (``write_mapped`` where one exists)."""
    writer = _writer()
    mapping = getattr(writer, "PageMapping", None)
    if mapping is not None:
        return writer.write_page(conn, mapping(source_rows), [], [], RUN_ID)
    with contextlib.suppress(ImportError):
        streamed = importlib.import_module("sync.postgres.streamed")
        pulled = importlib.import_module("sync.rows.transform").PageMapping(source_rows)
        return streamed.write_mapped(conn, pulled, [], [], RUN_ID)
    page = transform_page(source_rows)
    return writer.write_page(conn, page.rows, [], page.issues, RUN_ID)


def sync_write(url: str, source_rows: Sequence[dict[str, Any]], page_size: int) -> dict[str, Any]:
    """A page's mapping + write + commit, one transaction per page, as the pipeline does."""
    conn = connect_url(url)
    totals: dict[str, int] = {}
    try:
        for start in range(0, len(source_rows), page_size):
            counts = _write_one(conn, source_rows[start : start + page_size]).counts
            conn.commit()
            for k, v in asdict(counts).items():
                totals[k] = totals.get(k, 0) + v
    finally:
        conn.close()
    return totals


def sink_write(url: str, pages: Sequence[Sequence[OpportunityRow]]) -> None:
    """write_page + commit of rows transformed beforehand: the sink's share of the write path."""
    writer = _writer()
    mapping = getattr(getattr(writer, "PageMapping", None), "of", None)
    conn = connect_url(url)
    try:
        for rows in pages:
            writer.write_page(conn, mapping(rows) if mapping else rows, [], [], RUN_ID)
            conn.commit()
    finally:
        conn.close()


def _stored_value(row: OpportunityRow, column: stored.Column) -> Any:
    if column.role is Role.HASH:
        return row.content_hash
    if column.role is Role.DELETED:
        return None  # only live rows are copied
    return row[column.name]


def copy_text(rows: Sequence[OpportunityRow]) -> bytes:
    """COPY text of the stored rows, rendered before the clock starts."""
    lines = [encoding.line([_stored_value(r, c) for c in stored.COPY_ORDER]) for r in rows]
    return "".join(lines).encode("utf-8")


def copy_limit(url: str, payload: bytes) -> None:
    """Server-side ``COPY opportunities FROM STDIN`` through psycopg2's C ``copy_expert``.

    The table is the migrated one: primary key, unique source id and the spec's three indexes.
    The payload is pre-rendered, so this times the server, not Python.
    """
    import psycopg2

    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            columns = ", ".join(c.name for c in stored.COPY_ORDER)
            cur.copy_expert(f"COPY opportunities ({columns}) FROM STDIN", io.BytesIO(payload))
        conn.commit()
    finally:
        conn.close()


def dlt_merge(url: str, rows: Sequence[OpportunityRow]) -> None:
    """dlt's merge (delete-insert) of the same stored rows, end to end: extract, normalize, load."""
    import dlt

    records = [
        {
            **{c.name: _stored_value(r, c) for c in stored.COPY_ORDER if c.role is not Role.DELETED},
            "metadata": json.loads(r["metadata"]),
        }
        for r in rows
    ]
    with tempfile.TemporaryDirectory(prefix="bench-dlt-") as workdir:
        pipeline = dlt.pipeline(
            pipeline_name="bench_opportunities",
            pipelines_dir=workdir,
            # dlt insists on a password; the local server trusts loopback and ignores it.
            destination=dlt.destinations.postgres(credentials=url.replace("postgres@", "postgres:unused@", 1)),
            dataset_name="dlt_bench",
        )
        resource = dlt.resource(
            records,
            name="opportunities",
            write_disposition="merge",
            primary_key="gong_opportunity_id",
            columns={"metadata": {"data_type": "json"}},
        )
        pipeline.run(resource)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def run_ours(source_rows: Sequence[dict[str, Any]], page_sizes: Sequence[int]) -> dict[str, Any]:
    """One round of this package's write path: pages, the unchanged rerun, the sink and the transform alone.

    ``bench/baseline.py`` calls this against the pre-change package too, so it uses only what
    both have: ``transform_page``, ``write_page`` and the stored-row declaration.
    """
    first_size = page_sizes[0]
    pre_transformed = [transform_page(source_rows[i : i + first_size]).rows for i in range(0, len(source_rows), first_size)]
    samples: dict[str, list[float]] = {f"sync_pages_{size}": [] for size in page_sizes}
    counts: dict[str, Any] = {}
    footprints: list[dict[str, Any]] = []
    for size in page_sizes:
        with fresh_database() as url:
            seconds, counts[f"sync_pages_{size}"] = timed(lambda u=url, s=size: sync_write(u, source_rows, s))
            samples[f"sync_pages_{size}"].append(seconds)
            if size == first_size:
                # The same rows again: nothing may be written, locked or numbered.
                before = footprint(url)
                seconds, counts["unchanged_rerun"] = timed(lambda u=url, s=size: sync_write(u, source_rows, s))
                samples["unchanged_rerun"] = [seconds]
                footprints.append(before.diff(footprint(url)))
    with fresh_database() as url:
        samples["sink_only"] = [timed(lambda u=url: sink_write(u, pre_transformed))[0]]
    # Page by page, as the pipeline maps them: one 100k-row call measures the collector, not the mapping.
    samples["transform_only"] = [
        timed(lambda: [transform_page(source_rows[i : i + first_size]) for i in range(0, len(source_rows), first_size)])[0]
    ]
    live = [r for rows in pre_transformed for r in rows if not r.deleted]
    render = getattr(stored, "insert_line", stored.copy_line)
    samples["encode_only"] = [timed(lambda: sum(len(render(r)) for r in live))[0] * len(source_rows) / max(len(live), 1)]
    return {"samples": samples, "counts": counts, "rerun_footprint": footprints}


def run(
    source_rows: Sequence[dict[str, Any]],
    repeats: int,
    page_sizes: Sequence[int],
    with_dlt: bool,
    ours: Callable[[], dict[str, Any]] | None = None,
    baseline: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Every approach once per round, rounds interleaved so machine noise hits them alike.

    ``ours`` and ``baseline`` run :func:`run_ours` with today's and the pre-change package, each
    in a child interpreter (``bench/baseline.py``); without ``ours`` it runs in this process.
    """
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    stored_rows = transform_page(source_rows).rows
    payload = copy_text([r for r in stored_rows if not r.deleted])
    samples: dict[str, list[float]] = {"copy_limit": [], "dlt_merge": []}
    base_samples: dict[str, list[float]] = {}
    counts: dict[str, Any] = {}
    rerun_diffs: list[dict[str, Any]] = []
    base_diffs: list[dict[str, Any]] = []
    for round_ in range(repeats):
        with fresh_database() as url:
            samples["copy_limit"].append(timed(lambda u=url: copy_limit(u, payload))[0])
        # Whoever runs first follows the COPY limit's 100k-row write (WAL, checkpoints): every
        # other round the baseline goes first, so that cost falls on both sides alike.
        baseline_first = baseline is not None and round_ % 2 == 1
        theirs = baseline() if baseline is not None and baseline_first else None
        mine = ours() if ours is not None else run_ours(source_rows, page_sizes)
        if baseline is not None and not baseline_first:
            theirs = baseline()
        for key, values in mine["samples"].items():
            samples.setdefault(key, []).extend(values)
        counts = mine["counts"]
        rerun_diffs += mine["rerun_footprint"]
        if theirs is not None:
            for key, values in theirs["samples"].items():
                base_samples.setdefault(key, []).extend(values)
            base_diffs += theirs["rerun_footprint"]
        if with_dlt:
            with fresh_database(migrated=False) as url:
                samples["dlt_merge"].append(timed(lambda u=url: dlt_merge(u, stored_rows))[0])
    return {
        "rows": len(source_rows),
        "samples": samples,
        "counts": counts,
        "rerun_footprint": rerun_diffs,
        "baseline": {"samples": base_samples, "rerun_footprint": base_diffs} if baseline is not None else None,
    }
