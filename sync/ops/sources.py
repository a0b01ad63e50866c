"""``python -m sync source``: the source shape the replica was built from, against the source now.

Without a flag it shows both and writes nothing. ``--accept`` records the source as it is now
(same opportunity table) and asks the next run to re-read every row, for a change an operator
intends (a table removed for good). ``--switch salesforce|gong`` changes the opportunity table
the replica reads, which only this command does, and asks the next run for a full resync, so no
row keeps a value of the other table and the purge removes what the new one lacks.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from sync.bigquery.shape import ORIGINS, Shape, compare
from sync.ops import report
from sync.postgres import requests, shapes
from sync.postgres.transaction import transaction
from sync.run.runtime import Runtime


def add_parser(sub: Any) -> None:
    """Register ``source`` on the CLI's subparsers."""
    parser = sub.add_parser(
        "source",
        help="show or change the source shape the replica is built from",
        description="Show the recorded source shape beside the source as it is now. --accept records the source as it"
        " is (the next run re-reads every row); --switch changes the opportunity table (the next run is a full resync).",
    )
    change = parser.add_mutually_exclusive_group()
    change.add_argument("--accept", action="store_true", help="record the source as it is now; the next run re-reads every row")
    change.add_argument("--switch", choices=ORIGINS, help="read this dataset's opportunity table; the next run is a full resync")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def command(args: argparse.Namespace, runtime: Runtime, out: TextIO) -> int:
    """Run ``source``: 0 when the source has what was recorded (or after a change), 1 when it lacks something."""
    conn = runtime.connect()
    try:
        with transaction(conn):
            stored = shapes.load(conn)
        recorded = Shape.from_json(stored) if stored is not None else None
        if args.switch or args.accept:
            origin = args.switch or (recorded.origin if recorded else None)
            # A recorded shape with no tables pins only the opportunity table: nothing can be missing.
            current = runtime.source().shape(Shape(origin, {}) if origin else None, fresh=True)
            kind: requests.Kind = "full_resync" if args.switch else "reread"
            reason = f"operator: source --switch {args.switch}" if args.switch else "operator: source --accept"
            with transaction(conn):
                shapes.save(conn, current.to_json(), reason)
                requests.add(conn, kind, reason=reason, requested_by="python -m sync source")
            _show({"recorded": current.to_json(), "next_run": kind.replace("_", " ")}, args, out)
            return 0
        current = runtime.source().shape(Shape(recorded.origin, {}) if recorded else None, fresh=True)
        difference = compare(recorded, current) if recorded else None
        data = {
            "recorded": recorded.to_json() if recorded else None,
            "source_now": current.to_json(),
            "missing": list(difference.missing) if difference else [],
            "appeared": list(difference.appeared) if difference else [],
        }
        _show(data, args, out)
        return 1 if data["missing"] else 0
    finally:
        conn.close()


def _show(data: dict[str, Any], args: argparse.Namespace, out: TextIO) -> None:
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str), file=out)
        return
    for key, value in data.items():
        if isinstance(value, dict):
            print(f"{key}: opportunity table from {value['opportunity_table']}", file=out)
            on = [f for f, v in value["features"].items() if v]
            off = [f for f, v in value["features"].items() if not v]
            print(f"  features on:  {', '.join(on) or '-'}", file=out)
            print(f"  features off: {', '.join(off) or '-'}", file=out)
            for role, table in value["tables"].items():
                print(f"  {role:<26} {report.printable(table['table'])}", file=out)
        elif isinstance(value, list):
            print(f"{key}: {report.printable(', '.join(value)) or '-'}", file=out)
        else:
            print(f"{key}: {report.printable(str(value)) if value is not None else '-'}", file=out)
