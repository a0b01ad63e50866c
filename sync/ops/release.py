"""``python -m sync release-deletes``: approve the deletes the guard held, after looking at them.

A release never applies the held list. It approves up to the held count and asks for a re-read
(``sync_requests``) that the next new run honours: a full resync for a held purge, the
opportunities read again from the beginning for held source deletes. That run derives the
deletes from the source as it is by then, so a source that has recovered deletes nothing, and
one that lost more than was approved is held again (``sync/postgres/guard.py``).
"""

from __future__ import annotations

import argparse
import getpass
import json
from typing import Any, TextIO

from sync.ops import report
from sync.postgres import holds
from sync.postgres.guard import HoldKind
from sync.postgres.transaction import transaction
from sync.run.runtime import Runtime
from sync.run.state import read_state

_WHAT = {HoldKind.PURGE: "a full resync's purge", HoldKind.SOURCE_DELETES: "rows the source flags deleted"}
_REREAD = {
    HoldKind.PURGE: "a full resync",
    HoldKind.SOURCE_DELETES: "a re-read of the opportunities from the beginning",
}


def add_parser(sub: Any) -> None:
    """Register ``release-deletes`` on the CLI's subparsers."""
    parser = sub.add_parser(
        "release-deletes",
        help="approve the deletes the guard held, and re-read the source to apply them",
        description="Approve the deletes held by the delete guard (see `status`), up to the held count, and ask"
        " the next run to re-read the source and derive them again. The held list itself is never applied.",
    )
    parser.add_argument("--run", metavar="RUN_ID", help="only the holds of this run (its id, or the first 8 characters)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def command(args: argparse.Namespace, runtime: Runtime, out: TextIO, err: TextIO) -> int:
    """Release the open holds (or one run's): 0 when released or none held, 1 when refused."""
    conn = runtime.connect()
    try:
        run_id = report.run_id_from(conn, args.run) if args.run else None
        try:
            with transaction(conn):
                running = read_state(conn).run_id
                released = holds.release(conn, run_id=run_id, by=f"{getpass.getuser()} (release-deletes)", running=running)
        except holds.ReleaseRefusedError as refused:
            print(f"error: {report.printable(str(refused))}", file=err)
            return 1
    finally:
        conn.close()
    if args.json:
        json.dump([report.jsonable(vars(r)) for r in released], out, indent=2, default=str)
        out.write("\n")
        return 0
    if not released:
        print("no deletes are held" + (" for that run" if run_id else ""), file=out)
    for r in released:
        print(
            f"approved up to {r.approved} deletes ({_WHAT[r.kind]}) held by run {r.run_id}"
            f" against {r.live_rows} live rows;\n  asked for {_REREAD[r.kind]} (request {r.request_id}), which"
            " derives them again from the source as it is now and holds them again past the approval",
            file=out,
        )
    if released:
        print("the next tick starts it (python -m sync publish tick, or run --until-done)", file=out)
    return 0
