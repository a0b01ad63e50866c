"""``python -m sync``: migrate, run, status, runs, rejections, publish, verify.

Exit codes: 0 ok; 1 a sync failure; 2 bad usage or configuration. Failures print one line
to stderr saying why. Human output passes every text through :func:`report.printable`, since
source values (ids, error texts) can carry terminal control sequences; ``--json`` is exact.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Sequence
from typing import Any, TextIO

from sync import deadletters, logs, report, verify
from sync.config import Settings
from sync.errors import ConfigurationError, classify
from sync.messages import Message
from sync.pipeline import Outcome
from sync.preview import preview
from sync.runtime import Runtime
from sync.schema import current_version, upgrade
from sync.sink import WriteCounts

_MISSING_ROW = "sync_status has no 'opportunities' row (it was deleted)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sync", description="Sync Salesforce/Gong opportunities from BigQuery to Postgres."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply pending schema migrations", description="Apply pending schema migrations (idempotent).")
    run = sub.add_parser(
        "run",
        help="process one page, exactly as one function invocation",
        description="Process one page as one invocation would; --until-done drains every page in-process.",
    )
    run.add_argument("--until-done", action="store_true", help="loop pages in-process until the run completes (no Pub/Sub)")
    run.add_argument("--full-resync", action="store_true", help="start a full resync instead of a tick")
    status = sub.add_parser(
        "status", help="show sync status", description="Show the sync status, the current or last run, and lag."
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    runs = sub.add_parser("runs", help="list recent runs", description="List recent sync runs, newest first.")
    runs.add_argument("--limit", type=int, default=20)
    runs.add_argument("--json", action="store_true")
    rej = sub.add_parser("rejections", help="list skipped or degraded rows", description="List rejected rows with reasons.")
    rej.add_argument("--run", type=uuid.UUID, help="only this run id")
    rej.add_argument("--limit", type=int, default=100)
    rej.add_argument("--json", action="store_true")
    prev = sub.add_parser(
        "preview",
        help="dry run of the next page",
        description="Report what the next page would insert, update, skip and reject; writes nothing.",
    )
    prev.add_argument("--json", action="store_true")
    pub = sub.add_parser(
        "publish", help="publish a message to SYNC_TOPIC", description="Publish tick or full-resync to SYNC_TOPIC."
    )
    pub.add_argument("kind", choices=["tick", "full-resync"])
    deadletters.add_parser(sub)
    verify.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None, env: dict[str, str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    environ = os.environ if env is None else env
    if args.command == "dead-letters":  # needs Pub/Sub only, not the database or BigQuery settings
        return deadletters.main(args, environ, out, sys.stderr)
    try:
        settings = Settings.from_env(environ)
    except ConfigurationError as err:
        _error(err)
        return 2
    # Logs go to stderr so that stdout stays the command's own output. A drain watched on a
    # terminal shows progress instead of per-page log lines, unless LOG_LEVEL asks for them.
    watched = args.command == "run" and args.until_done and out.isatty() and "LOG_LEVEL" not in environ
    logs.configure("WARNING" if watched else settings.log_level, sys.stderr)
    runtime = Runtime(settings)
    try:
        return _dispatch(args, runtime, out)
    except Exception as err:  # noqa: BLE001 - the CLI reports every failure as one line
        failure = classify(err)
        _error(failure)
        # A configuration problem found only when a client is built (no Google credentials,
        # an unknown Cloud SQL instance) is still bad configuration, not a sync failure.
        return 2 if isinstance(failure, ConfigurationError) else 1


def _dispatch(args: argparse.Namespace, runtime: Runtime, out: TextIO) -> int:
    if args.command == "migrate":
        conn = runtime.connect()
        try:
            upgraded = upgrade(conn)
            print(f"schema at version {current_version(conn)}; applied {upgraded.applied or 'nothing'}", file=out)
            if upgraded.restored_status_row:
                print(f"{_MISSING_ROW}; restored it: the next run starts from the beginning of the source", file=out)
        finally:
            conn.close()
        return 0
    if args.command == "run":
        runtime.ensure_schema()
        return _run(runtime, out, until_done=args.until_done, full=args.full_resync)
    if args.command == "publish":
        publisher = runtime.publisher()
        if publisher is None:
            print("error: SYNC_TOPIC is not set", file=sys.stderr)
            return 2
        publisher.publish(Message.full_resync() if args.kind == "full-resync" else Message.tick())
        print(f"published {args.kind} to {runtime.settings.sync_topic}", file=out)
        return 0
    if args.command == "verify":
        return verify.command(args, runtime, out)
    conn = runtime.connect()
    try:
        if args.command == "preview":
            result = preview(runtime.settings, runtime.source(), conn)
            _emit(result.as_dict(), out, as_json=args.json, table=_preview_table)
        elif args.command == "status":
            data: Any = report.status(conn)
            if "status" not in data:
                print(f"error: {_MISSING_ROW}; run `python -m sync migrate` to restore it", file=sys.stderr)
                return 1
            _emit(data, out, as_json=args.json, table=_status_table)
        elif args.command == "runs":
            _emit(report.runs(conn, args.limit), out, as_json=args.json, table=_rows_table)
        else:
            _emit(report.rejections(conn, args.run, args.limit), out, as_json=args.json, table=_rows_table)
    finally:
        conn.close()
    return 0


def _run(runtime: Runtime, out: TextIO, *, until_done: bool, full: bool) -> int:
    # Draining locally needs no Pub/Sub: each outcome carries the next message.
    pipeline = runtime.pipeline(None if until_done else runtime.publisher())
    message = Message.full_resync(f"cli-{uuid.uuid4()}") if full else Message.tick()
    pages = rows = skipped = 0
    totals = WriteCounts()
    progress = until_done and out.isatty()
    while True:
        outcome: Outcome = pipeline.handle(message)
        if outcome.action == "busy":
            # The lease lives in the status row: without the row, every run looks busy.
            if not _status_row_exists(runtime):
                print(f"error: {_MISSING_ROW}; run `python -m sync migrate` to restore it", file=sys.stderr)
            else:
                print("error: another sync run is in flight; try again when it finishes", file=sys.stderr)
            return 1
        if outcome.action != "page":
            print(report.printable(f"{outcome.action}: {outcome.reason}"), file=out)
            return 0 if outcome.action == "dropped" else 1
        pages += 1
        rows += outcome.rows_read
        skipped += outcome.skipped
        for name in ("inserted", "updated", "unchanged", "deleted", "links_added", "links_removed"):
            setattr(totals, name, getattr(totals, name) + getattr(outcome.counts, name))
        if progress:
            print(f"\rpage {pages}, {rows} rows read", end="", file=out, flush=True)
        if not until_done or outcome.continuation is None:
            break
        message = outcome.continuation
    if progress:
        print(file=out)
    done = "run complete" if outcome.continuation is None else "more pages remain"
    t = totals
    print(
        f"{pages} page(s), {rows} rows read: {t.inserted} inserted, {t.updated} updated, {t.unchanged} unchanged,"
        f" {skipped} skipped, {t.deleted} deleted; call links +{t.links_added} -{t.links_removed}; {done}",
        file=out,
    )
    return 0


def _status_row_exists(runtime: Runtime) -> bool:
    conn = runtime.connect()
    try:
        return "status" in report.status(conn)
    finally:
        conn.close()


def _emit(data: Any, out: TextIO, *, as_json: bool, table: Any) -> None:
    if as_json:
        json.dump(report.jsonable(data), out, indent=2, default=str)
        out.write("\n")
    else:
        table(data, out)


def _status_table(data: dict[str, Any], out: TextIO) -> None:
    opp = data.get("opportunities", {})
    last = data.get("last_run") or {}
    lines = [
        ("status", data.get("status")),
        ("last sync (watermark)", data.get("last_sync_timestamp")),
        ("since newest source change", _duration(data.get("lag_seconds"))),
        ("items synced (last run)", data.get("items_synced")),
        ("errors (last run)", data.get("error_count")),
        ("last error", data.get("last_error") or "-"),
        (
            "run in progress",
            f"{data.get('run_id')} ({data.get('run_trigger')}, next page {data.get('run_next_page')})"
            if data.get("run_id")
            else "-",
        ),
        ("in flight now", "yes" if data.get("in_flight") else "no"),
        # Set after a page timed out; it doubles back to SYNC_PAGE_SIZE as pages commit.
        ("page size limit", data.get("page_size_limit") or "- (SYNC_PAGE_SIZE)"),
        (
            "opportunities",
            f"{opp.get('live', 0)} live, {opp.get('deleted', 0)} soft-deleted, {opp.get('call_links', 0)} call links",
        ),
        (
            "last run",
            f"{last.get('run_id')} {last.get('trigger')} {last.get('status')}: {last.get('pages')} pages, "
            f"{last.get('rows_read')} read, {last.get('rows_inserted')} ins, {last.get('rows_updated')} upd, "
            f"{last.get('rows_skipped')} skipped"
            if last
            else "-",
        ),
        ("last run's BigQuery cost", _cost(last) if last else "-"),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key:<{width}}  {'-' if value is None else report.printable(str(value))}", file=out)


def _preview_table(data: dict[str, Any], out: TextIO) -> None:
    print(report.printable(f"next page: {data['run']}" + (f", page {data['page']}" if data["page"] else "")), file=out)
    for key in ("rows_read", "would_insert", "would_update", "would_delete", "unchanged", "would_skip", "degraded", "links_read"):
        print(f"  {key:<13} {data[key]}", file=out)
    issues = data["issues"]
    if issues:
        print("rejections:", file=out)
        _rows_table(issues[:50], out)


def _rows_table(rows: list[dict[str, Any]], out: TextIO) -> None:
    if not rows:
        print("(none)", file=out)
        return
    columns = list(rows[0])
    cells = [[_cell(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)), file=out)
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)), file=out)


def _cell(value: Any) -> str:
    text = json.dumps(report.jsonable(value), default=str) if isinstance(value, (dict, list)) else str(report.jsonable(value))
    # Escape before cutting, so the width counts what the terminal shows.
    text = report.printable(text)
    return "-" if value is None else (text if len(text) <= 60 else text[:57] + "...")


def _error(err: BaseException) -> None:
    print(f"error: {report.printable(str(err))}", file=sys.stderr)


def _cost(run: dict[str, Any]) -> str:
    """Jobs and bytes as BigQuery reported them; "unknown" where it did not (the emulator bills nothing)."""
    jobs = run.get("bigquery_jobs")
    processed, billed = run.get("bigquery_bytes_processed"), run.get("bigquery_bytes_billed")
    return f"{'?' if jobs is None else jobs} jobs, {_bytes(processed)} processed, {_bytes(billed)} billed"


def _bytes(value: Any) -> str:
    if value is None:
        return "unknown"
    return f"{int(value) / 1e6:,.1f} MB"


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "-"
    s = int(float(seconds))
    return f"{s // 3600}h {s % 3600 // 60}m {s % 60}s"


__all__ = ["build_parser", "main"]
