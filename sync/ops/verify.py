"""``python -m sync verify``: prove the replica matches the source as the sync sees it, writing nothing.

Each stream's run query is evaluated once from the start with no bound (``BigQuerySource.whole``)
and read slice by slice. Every slice goes through the sync's own transform and remembered
refusals (``sync/rows/transform.py``, ``sync/postgres/refused.py``), so what is compared is exactly what a
run would store now, and is COPYed with the sink's own line format into temp tables. Postgres
then compares them with ``opportunities`` and ``call_opportunities`` in one snapshot.

Why temp tables and not a merge-join in Python: ``metadata`` is jsonb, which Postgres
normalises (key order, spacing), so its stored text cannot be compared with the text the
transform renders; Postgres's own equality on jsonb, numeric and date is the one the sink's
merge uses. Python holds one slice at a time; the temp tables live in the session and spill
to disk. After creating them the session is set read only, so Postgres itself refuses any
write to a real table; temp tables are the only thing written.

What counts as drift, and what does not (docs/verify.md):

- **missing**: the sync would store the id live, and Postgres has no row for it or a soft-deleted one.
- **extra**: Postgres holds the id live, and the source has no storable row for it or a deleted one.
- **changed**: both hold it live (or both deleted), and a stored column the merge compares
  (every synced value and ``content_hash``) differs from what the sync would store now.
- **missing_links / extra_links**: ``call_opportunities`` against Gong's live links to
  opportunities expected live.

Rows the sync skips (a missing name, an id too long to store, a refusal remembered in
``sync_refused_rows``) are expected absent; if Postgres still holds an older live version, the
sync leaves it there, so it is counted as ``skipped_held``, not drift. Degraded rows (a value
that did not parse, or that Postgres refused and was stored NULL) are compared as the sync
stores them: the value NULL, the digest of the source content. Future-stamped rows are written
by a run like any other, so they are expected too.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from sync.bigquery.results import Cost
from sync.bigquery.streams import StreamKind
from sync.postgres import refused
from sync.postgres.db import Connection, Cursor
from sync.postgres.transaction import transaction
from sync.rows import encoding, stored
from sync.rows.stored import Column, Role
from sync.rows.transform import transform_links, transform_page
from sync.run import shape_check

if TYPE_CHECKING:
    from sync.run.runtime import Runtime

log = logging.getLogger(__name__)

DRIFT = ("missing", "extra", "changed", "missing_links", "extra_links")
_KEY = stored.KEY.name


class WholeSource(Protocol):
    """Reads every row of a stream's run query in slices (``BigQuerySource.whole``)."""

    def whole(self, stream: StreamKind, *, slice_rows: int, deadline: float, cost: Cost) -> Iterator[list[dict[str, Any]]]: ...


@dataclass
class Verification:
    """Drift counts with a sample of ids each, and what was compared."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DRIFT, 0))
    samples: dict[str, list[Any]] = field(default_factory=lambda: {k: [] for k in DRIFT})
    source_rows: int = 0
    source_live: int = 0
    source_deleted: int = 0
    future_stamped: int = 0
    skipped: int = 0
    skipped_held: int = 0
    degraded: int = 0
    source_links: int = 0
    postgres_live: int = 0
    postgres_deleted: int = 0
    postgres_links: int = 0
    sync_in_flight: bool = False
    bigquery_jobs: int = 0
    seconds: float = 0.0

    @property
    def drift(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {"drift": self.drift, **asdict(self)}


# --- SQL, derived from the stored declaration -------------------------------------------

_TEMP_DDL = (
    "CREATE TEMP TABLE verify_rows ("
    + ", ".join(f"{c.stage_name} {c.stage_type}" for c in stored.COPY_ORDER)
    + f", PRIMARY KEY ({_KEY}));"
    f"CREATE TEMP TABLE verify_skipped ({_KEY} text);"
    f"CREATE TEMP TABLE verify_links (call_id text, {_KEY} text, PRIMARY KEY ({_KEY}, call_id))"
)
_COPY_ROWS = f"COPY verify_rows ({', '.join(c.stage_name for c in stored.COPY_ORDER)}) FROM STDIN"
_DELETED = stored.DELETED.stage_name


def _expected(c: Column) -> str:
    """The staged value as the merge stores it, for comparison with the stored column."""
    return f"s.{c.stage_name}::{c.pg_type}" if c.stage_type != c.pg_type else f"s.{c.stage_name}"


# What the merge compares (every synced value and the digest); the deleted state is matched apart.
_COMPARED = [c for c in stored.COPY_ORDER if c.compared and c.role is not Role.DELETED]
_LIVE_IN_SOURCE = f"SELECT 1 FROM verify_rows s WHERE s.{_KEY} = {{id}} AND NOT s.{_DELETED}"
_HELD_LIVE = f"SELECT 1 FROM opportunities o WHERE o.{_KEY} = {{id}} AND o.deleted_at IS NULL"

_OPPORTUNITY_DRIFT = {
    "missing": f"SELECT s.{_KEY} FROM verify_rows s WHERE NOT s.{_DELETED} AND NOT EXISTS ({_HELD_LIVE.format(id='s.' + _KEY)})",
    "extra": (
        f"SELECT o.{_KEY} FROM opportunities o WHERE o.deleted_at IS NULL"
        f" AND NOT EXISTS ({_LIVE_IN_SOURCE.format(id='o.' + _KEY)})"
        f" AND NOT EXISTS (SELECT 1 FROM verify_skipped k WHERE k.{_KEY} = o.{_KEY})"
    ),
    "changed": (
        f"SELECT o.{_KEY} FROM opportunities o JOIN verify_rows s ON s.{_KEY} = o.{_KEY}"
        f" WHERE (o.deleted_at IS NULL) = (NOT s.{_DELETED})"
        f" AND ({', '.join('o.' + c.name for c in _COMPARED)}) IS DISTINCT FROM ({', '.join(_expected(c) for c in _COMPARED)})"
    ),
}
# A link lands once both ends exist (sink._LINK): expected for every opportunity expected live,
# and for a skipped one whose older version the sync leaves live.
_EXPECTED_LINKS = (
    f"SELECT l.call_id, l.{_KEY} FROM verify_links l"
    f" WHERE EXISTS ({_LIVE_IN_SOURCE.format(id='l.' + _KEY)})"
    f" OR (EXISTS (SELECT 1 FROM verify_skipped k WHERE k.{_KEY} = l.{_KEY}) AND EXISTS ({_HELD_LIVE.format(id='l.' + _KEY)}))"
)
_STORED_LINKS = f"SELECT co.call_id, o.{_KEY} FROM call_opportunities co JOIN opportunities o ON o.id = co.opportunity_id"
_LINK_DRIFT = {
    "missing_links": f"{_EXPECTED_LINKS} EXCEPT {_STORED_LINKS}",
    "extra_links": f"{_STORED_LINKS} EXCEPT {_EXPECTED_LINKS}",
}
_TOTALS = (
    "SELECT (SELECT count(*) FROM opportunities WHERE deleted_at IS NULL),"
    " (SELECT count(*) FROM opportunities WHERE deleted_at IS NOT NULL),"
    " (SELECT count(*) FROM call_opportunities),"
    f" (SELECT count(DISTINCT k.{_KEY}) FROM verify_skipped k WHERE EXISTS ({_HELD_LIVE.format(id='k.' + _KEY)})),"
    " EXISTS (SELECT 1 FROM sync_status WHERE run_id IS NOT NULL)"
)


# --- the comparison ------------------------------------------------------------------------


def verify(
    source: WholeSource,
    conn: Connection,
    *,
    sample: int = 10,
    slice_rows: int = 2000,
    deadline: float,
    progress: Callable[[StreamKind, int], None] | None = None,
) -> Verification:
    """Compare Postgres with the source as the sync would store it now.

    ``conn`` must be a connection of its own: it is left read only, holding temp tables, and
    the caller closes it. Raises whatever the source or Postgres raise; nothing is written.
    """
    started = time.monotonic()
    result, cost = Verification(), Cost()
    with transaction(conn):
        cur = conn.cursor()
        cur.execute(_TEMP_DDL)
        # From here on Postgres refuses any write to a real table in this session.
        cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    report = progress or (lambda _kind, _rows: None)
    for kind, stage in ((StreamKind.OPPORTUNITIES, _stage_rows), (StreamKind.CALL_LINKS, _stage_links)):
        read = 0
        for rows in source.whole(kind, slice_rows=slice_rows, deadline=deadline, cost=cost):
            with transaction(conn):
                stage(conn, rows, result)
            read += len(rows)
            report(kind, read)
    with transaction(conn):
        conn.cursor().execute("ANALYZE verify_rows; ANALYZE verify_skipped; ANALYZE verify_links")
    with transaction(conn):
        cur = conn.cursor()
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # one snapshot for every comparison
        _compare(cur, result, sample)
    result.bigquery_jobs = cost.jobs
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _stage_rows(conn: Connection, rows: Sequence[dict[str, Any]], result: Verification) -> None:
    """One slice of opportunities, mapped and recalled exactly as a run's page is, into verify_rows."""
    result.future_stamped += sum(1 for r in rows if r.get("beyond_cap"))
    page = transform_page(rows)
    recalled = refused.recall(conn, page.rows, [])
    kept = {r.source_id for r in recalled.rows}
    skipped = [i.source_id for i in page.issues if i.kind == "skipped" and i.source_id is not None]
    skipped += [r.source_id for r in page.rows if r.source_id not in kept]
    deleted = sum(1 for r in recalled.rows if r.deleted)
    result.source_rows += len(rows)
    result.source_deleted += deleted
    result.source_live += len(recalled.rows) - deleted
    result.skipped += len(skipped)
    result.degraded += len({i.source_id for i in [*page.issues, *recalled.issues] if i.kind == "degraded"})
    cur = conn.cursor()
    if recalled.rows:
        cur.execute(_COPY_ROWS, stream=encoding.chunks(map(stored.copy_line, recalled.rows)))
    if skipped:
        cur.execute(f"COPY verify_skipped ({_KEY}) FROM STDIN", stream=encoding.chunks(encoding.line((i,)) for i in skipped))


def _stage_links(conn: Connection, rows: Sequence[dict[str, Any]], result: Verification) -> None:
    """One slice of call links: the live ones the sync would keep, into verify_links."""
    live = [link for link in transform_links(rows).links if not link.deleted]
    kept = refused.recall(conn, [], live).links
    result.source_links += len(kept)
    if kept:
        conn.cursor().execute(
            f"COPY verify_links (call_id, {_KEY}) FROM STDIN",
            stream=encoding.chunks(encoding.line((link.call_id, link.gong_opportunity_id)) for link in kept),
        )


def _compare(cur: Cursor, result: Verification, sample: int) -> None:
    limit = max(sample, 1)  # the count rides on the first row, so at least one is fetched
    for name, sql in _OPPORTUNITY_DRIFT.items():
        cur.execute(f"SELECT d.{_KEY}, count(*) OVER () FROM ({sql}) AS d ORDER BY 1 LIMIT %s", (limit,))
        _take(result, name, cur.fetchall(), sample, lambda r: str(r[0]))
    for name, sql in _LINK_DRIFT.items():
        cur.execute(f"SELECT d.call_id, d.{_KEY}, count(*) OVER () FROM ({sql}) AS d ORDER BY 2, 1 LIMIT %s", (limit,))
        _take(result, name, cur.fetchall(), sample, lambda r: {"call_id": str(r[0]), "opportunity_id": str(r[1])})
    cur.execute(_TOTALS)
    totals = cur.fetchone()
    if totals is not None:
        result.postgres_live, result.postgres_deleted, result.postgres_links, result.skipped_held = (int(v) for v in totals[:4])
        result.sync_in_flight = bool(totals[4])


def _take(
    result: Verification, name: str, rows: Iterable[Sequence[Any]], sample: int, label: Callable[[Sequence[Any]], Any]
) -> None:
    rows = list(rows)
    result.counts[name] = int(rows[0][-1]) if rows else 0
    result.samples[name] = [label(r) for r in rows[:sample]]


def log_finished(result: Verification) -> None:
    """The ``verify_finished`` event, with every count, for a log-based metric or alert."""
    fields = {k: v for k, v in result.as_dict().items() if k not in {"counts", "samples"}}
    log.log(
        logging.WARNING if result.drift else logging.INFO,
        "verify finished: %s drift (%s)",
        result.drift,
        ", ".join(f"{k} {v}" for k, v in result.counts.items()),
        extra={"event": "verify_finished", **result.counts, **fields},
    )


# --- command line -----------------------------------------------------------------------------


def add_parser(sub: Any) -> None:
    """Register ``verify`` on the CLI's subparsers."""
    parser = sub.add_parser(
        "verify",
        help="compare Postgres with the source; writes nothing",
        description="Compare Postgres with the source as the sync would store it now: ids missing or extra,"
        " rows whose stored content differs, call links missing or extra. Exit 0 clean, 1 drift, 2 configuration.",
    )
    parser.add_argument("--sample", type=int, default=10, help="ids shown per kind of drift (default 10)")
    parser.add_argument("--slice-rows", type=int, default=2000, help="source rows read and staged at a time (default 2000)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds the source reads may take (default 3600)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def command(args: argparse.Namespace, runtime: Runtime, out: TextIO, err: TextIO | None = None) -> int:
    """Run ``verify``: 0 when the replica matches, 1 on drift (failures raise to the CLI)."""
    err = err or sys.stderr
    conn = runtime.connect()
    try:
        shape_check.follow_record(conn, runtime.source())
        result = verify(
            runtime.source(),
            conn,
            sample=max(args.sample, 0),
            slice_rows=max(args.slice_rows, 1),
            deadline=time.monotonic() + args.timeout,
            progress=_progress(err) if err.isatty() else None,
        )
    finally:
        conn.close()
    if err.isatty():
        print(file=err)
    log_finished(result)
    if args.json:
        json.dump(result.as_dict(), out, indent=2)
        out.write("\n")
    else:
        for line in render(result):
            print(line, file=out)
    return 1 if result.drift else 0


def _progress(err: TextIO) -> Callable[[StreamKind, int], None]:
    def show(kind: StreamKind, rows: int) -> None:
        print(f"\rverify: {kind.value} {rows:,} rows staged", end="", file=err, flush=True)

    return show


def render(result: Verification) -> list[str]:
    """The human summary: what was compared, then each kind of drift with its sample. Pure."""
    from sync.ops.report import printable

    r = result
    lines = [
        f"source: {r.source_rows} opportunities read ({r.source_live} live, {r.source_deleted} deleted,"
        f" {r.skipped} skipped by the sync, {r.degraded} degraded, {r.future_stamped} future-stamped);"
        f" {r.source_links} live call links",
        f"postgres: {r.postgres_live} live, {r.postgres_deleted} soft-deleted, {r.postgres_links} call links;"
        f" {r.skipped_held} skipped rows still held live (the sync leaves them)",
    ]
    for name in DRIFT:
        shown = ", ".join(_label(v) for v in r.samples[name])
        more = f" (first {len(r.samples[name])}: {printable(shown)})" if shown else ""
        lines.append(f"  {name:<14}{r.counts[name]}{more}")
    verdict = f"drift: {r.drift}" if r.drift else "no drift: Postgres holds what the sync would store"
    lines.append(f"{verdict}; {r.bigquery_jobs} BigQuery jobs, {r.seconds:.1f} s")
    if r.sync_in_flight:
        lines.append("note: a sync run was in flight; rows it had not written yet show as drift")
    return lines


def _label(value: Any) -> str:
    return f"{value['call_id']}->{value['opportunity_id']}" if isinstance(value, dict) else str(value)
