"""``python -m sync``: migrate, run, status, runs, rejections, preview, publish, dead-letters, verify, source,
release-deletes.

Exit codes: 0 ok; 1 a sync failure; 2 bad usage or configuration. Failures print one line
to stderr saying why. Human output passes every text through :func:`report.printable`, since
source values (ids, error texts) can carry terminal control sequences; ``--json`` is exact.
Tables fit the terminal (``--wide`` shows every column); progress goes to stderr, and only
when stderr is a terminal. Each command reads only the settings it needs (:data:`NEEDS`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from sync.core import logs
from sync.core.config import Settings
from sync.core.errors import ConfigurationError, classify
from sync.core.messages import Message
from sync.ops import arguments, deadletters, release, report, sources, verify, views
from sync.ops.preview import preview
from sync.ops.progress import tracking
from sync.postgres.schema import current_version, upgrade
from sync.postgres.writer import WriteCounts
from sync.run.pipeline import Outcome
from sync.run.runtime import Runtime


@dataclass(frozen=True)
class Needs:
    """What a command reads, so it asks only for those settings, and says so when one is missing."""

    what: str
    source: bool = False
    database: bool = True
    topic: bool = False


#: Every command's needs. A command registers its parser in :func:`build_parser`, its needs
#: here and its handler in ``_HANDLERS``.
NEEDS: dict[str, Needs] = {
    "migrate": Needs("writes the Postgres schema"),
    "run": Needs("reads BigQuery and writes Postgres", source=True),
    "preview": Needs("reads BigQuery and Postgres", source=True),
    "status": Needs("reads Postgres only"),
    "runs": Needs("reads Postgres only"),
    "rejections": Needs("reads Postgres only"),
    "publish": Needs("publishes to Pub/Sub only", database=False, topic=True),
    "verify": Needs("reads BigQuery and Postgres, writes nothing", source=True),
    "release-deletes": Needs("writes Postgres only"),
    "source": Needs("reads BigQuery and Postgres", source=True),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sync", description="Sync Salesforce/Gong opportunities from BigQuery to Postgres."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    migrate = sub.add_parser(
        "migrate", help="apply pending schema migrations", description="Apply pending schema migrations (idempotent)."
    )
    migrate.add_argument(
        "--grant-to",
        metavar="ROLE",
        help="then grant ROLE (the function's login) reads and writes on the sync's tables, and fail if it holds"
        " anything more: no CREATEROLE, CREATEDB, no membership of a role that has them",
    )
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
    runs.add_argument("--limit", type=arguments.count, default=20, help="at most this many runs (default 20)")
    _output_flags(runs)
    rej = sub.add_parser("rejections", help="list skipped or degraded rows", description="List rejected rows with reasons.")
    rej.add_argument("--run", metavar="RUN_ID", help="only this run (its id, or the first 8 characters `runs` shows)")
    rej.add_argument("--limit", type=arguments.count, default=100, help="at most this many rows (default 100)")
    _output_flags(rej)
    prev = sub.add_parser(
        "preview",
        help="dry run of the next page",
        description="Report what the next page would insert, update, skip and reject; writes nothing.",
    )
    prev.add_argument("--json", action="store_true", help="machine-readable output")
    pub = sub.add_parser(
        "publish", help="publish a message to SYNC_TOPIC", description="Publish tick or full-resync to SYNC_TOPIC."
    )
    pub.add_argument("kind", choices=["tick", "full-resync"])
    # A command with a module of its own registers its parser here, as dead-letters does.
    deadletters.add_parser(sub)
    verify.add_parser(sub)
    release.add_parser(sub)
    sources.add_parser(sub)
    return parser


def _output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wide", action="store_true", help="every column, as wide as the values need")
    parser.add_argument("--json", action="store_true", help="machine-readable output (every column, exact values)")


def main(argv: Sequence[str] | None = None, env: dict[str, str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    environ = os.environ if env is None else env
    if args.command == "dead-letters":  # needs Pub/Sub only, not the database or BigQuery settings
        return deadletters.main(args, environ, out, sys.stderr)
    needs = NEEDS[args.command]
    try:
        settings = Settings.from_env(
            environ, require_topic=needs.topic, require_source=needs.source, require_database=needs.database
        )
    except ConfigurationError as err:
        _error(f"python -m sync {args.command} {needs.what}; {err}")
        return 2
    # Logs go to stderr so that stdout stays the command's own output. A drain watched on a
    # terminal shows progress there instead of per-page log lines, unless LOG_LEVEL asks for them.
    watched = args.command == "run" and sys.stderr.isatty() and "LOG_LEVEL" not in environ
    logs.configure("WARNING" if watched else settings.log_level, sys.stderr)
    runtime = Runtime(settings)
    try:
        return _HANDLERS[args.command](args, runtime, out)
    except report.UnknownRunError as err:
        _error(str(err))
        return 2
    except Exception as err:  # noqa: BLE001 - the CLI reports every failure as one line
        failure = classify(err)
        _error(str(failure))
        # A configuration problem found only when a client is built (no Google credentials,
        # an unknown Cloud SQL instance) is still bad configuration, not a sync failure.
        return 2 if isinstance(failure, ConfigurationError) else 1


def _migrate(args: argparse.Namespace, runtime: Runtime, out: TextIO) -> int:
    conn = runtime.connect()
    try:
        upgraded = upgrade(conn, grant_to=args.grant_to)
        print(f"schema at version {current_version(conn)}; applied {upgraded.applied or 'nothing'}", file=out)
        if upgraded.granted:
            g = upgraded.granted
            print(
                f"granted {g.role} reads and writes on {len(g.tables)} tables, reads on {len(g.read_only)},"
                f" {len(g.sequences)} sequences; it holds nothing more",
                file=out,
            )
        if upgraded.restored_status_row:
            print(f"{views.MISSING_ROW}; restored it: the next run starts from the beginning of the source", file=out)
    finally:
        conn.close()
    return 0


def _publish(args: argparse.Namespace, runtime: Runtime, out: TextIO) -> int:
    publisher = runtime.publisher()
    if publisher is None:  # from_env requires SYNC_TOPIC for publish; kept as a guard
        _error("SYNC_TOPIC is not set")
        return 2
    publisher.publish(Message.full_resync() if args.kind == "full-resync" else Message.tick())
    print(f"published {args.kind} to {runtime.settings.sync_topic}", file=out)
    return 0


def _reading(show: Callable[[argparse.Namespace, Any, TextIO], int]) -> Callable[[argparse.Namespace, Runtime, TextIO], int]:
    """A command that reads Postgres on one connection, closed afterwards."""

    def handler(args: argparse.Namespace, runtime: Runtime, out: TextIO) -> int:
        conn = runtime.connect()
        try:
            return show(args, conn, out)
        finally:
            conn.close()

    return handler


def _status(args: argparse.Namespace, conn: Any, out: TextIO) -> int:
    data = report.status(conn)
    if "status" not in data:
        _error(f"{views.MISSING_ROW}; run `python -m sync migrate` to restore it")
        return 1
    if args.json:
        _json(data, out)
    else:
        views.status_sheet(data, out)
    return 0


def _runs(args: argparse.Namespace, conn: Any, out: TextIO) -> int:
    rows = report.runs(conn, args.limit)
    if args.json:
        _json(rows, out)
    else:
        views.runs_table(rows, out, wide=args.wide)
    return 0


def _rejections(args: argparse.Namespace, conn: Any, out: TextIO) -> int:
    run_id = report.run_id_from(conn, args.run) if args.run else None
    rows = report.rejections(conn, run_id, args.limit)
    if args.json:
        _json(rows, out)
    else:
        views.rejections_table(rows, out, wide=args.wide)
    return 0


def _preview(args: argparse.Namespace, runtime: Runtime, out: TextIO) -> int:
    conn = runtime.connect()
    try:
        with tracking("reading the sync state") as progress:
            result = preview(runtime.settings, runtime.source(), conn, step=progress.update)
    finally:
        conn.close()
    if args.json:
        _json(result.as_dict(), out)
    else:
        views.preview_sheet(result.as_dict(), out)
    return 0


def _run(args: argparse.Namespace, runtime: Runtime, out: TextIO) -> int:
    runtime.ensure_schema()
    until_done = args.until_done
    # Draining locally needs no Pub/Sub: each outcome carries the next message.
    pipeline = runtime.pipeline(None if until_done else runtime.publisher())
    message = Message.full_resync(f"cli-{uuid.uuid4()}") if args.full_resync else Message.tick()
    pages = rows = skipped = held_total = 0
    totals = WriteCounts()
    with tracking("page 1") as progress:
        while True:
            outcome: Outcome = pipeline.handle(message)
            if outcome.action == "busy":
                return _busy(runtime)
            if outcome.action != "page":
                print(report.printable(f"{outcome.action}: {outcome.reason}"), file=out)
                return 0 if outcome.action == "dropped" else 1
            pages += 1
            rows += outcome.rows_read
            skipped += outcome.skipped
            held_total += outcome.held
            totals += outcome.counts
            progress.update(f"page {pages}, {rows} rows read")
            if not until_done or outcome.continuation is None:
                break
            message = outcome.continuation
    done = "run complete" if outcome.continuation is None else "more pages remain"
    t = totals
    # Each row read is counted once, so the six counts (seven, with deletes held) add up to the rows read.
    held = f", {held_total} deletes held (see status)" if held_total else ""
    print(
        f"{pages} page(s), {rows} rows read: {t.inserted} inserted, {t.updated} updated, {t.unchanged} unchanged,"
        f" {skipped} skipped,\n{t.deleted} soft-deleted, {t.not_stored} deleted in the source and never stored{held};"
        f" call links +{t.links_added} -{t.links_removed}; {done}",
        file=out,
    )
    return 0


def _busy(runtime: Runtime) -> int:
    # The lease lives in the status row: without the row, every run looks busy.
    conn = runtime.connect()
    try:
        missing = "status" not in report.status(conn)
    finally:
        conn.close()
    if missing:
        _error(f"{views.MISSING_ROW}; run `python -m sync migrate` to restore it")
    else:
        _error("another sync run is in flight; try again when it finishes")
    return 1


_HANDLERS: dict[str, Callable[[argparse.Namespace, Runtime, TextIO], int]] = {
    "migrate": _migrate,
    "run": _run,
    "preview": _preview,
    "publish": _publish,
    "status": _reading(_status),
    "runs": _reading(_runs),
    "rejections": _reading(_rejections),
    "verify": verify.command,
    "release-deletes": lambda args, runtime, out: release.command(args, runtime, out, sys.stderr),
    "source": sources.command,
}


def _json(data: Any, out: TextIO) -> None:
    json.dump(report.jsonable(data), out, indent=2, default=str)
    out.write("\n")


def _error(text: str) -> None:
    print(f"error: {report.printable(text)}", file=sys.stderr)


__all__ = ["build_parser", "main"]
