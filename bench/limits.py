"""Do the transform's pre-checks (``sync/rows/limits.py``) pay? A page of values Postgres refuses, with and without them.

With a check, the transform stores the value as NULL (or skips the row) and the page writes in
one attempt. Without it, the value reaches Postgres, the page's write fails, and isolation
(``sync/postgres/isolate.py``) bisects the page under savepoints to find each bad row. Both end
with the same rows stored; the bench times the write + commit of one page each way, into a fresh
database, for each check and a few counts of bad rows per page.

Run: ``python -m bench.limits [--page 2000] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import string
import sys
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from bench.data import make_rows
from bench.pg import fresh_database
from sync.postgres.db import connect_url
from sync.postgres.writer import write_page
from sync.rows import stored
from sync.rows.stored import OpportunityRow
from sync.rows.transform import PageMapping, transform_page

RUN_ID = "00000000-0000-0000-0000-0000000000b5"


def _noise(n: int, seed: int) -> str:
    """Incompressible text: pglz cannot shrink it below the btree limit."""
    rnd = random.Random(seed)  # noqa: S311 - reproducible bench data
    return "".join(rnd.choice(string.ascii_letters + string.digits) for _ in range(n))


# check -> (source column, stored column, a source value it refuses, that value once parsed)
BAD: dict[str, tuple[str, str, Callable[[int], Any], Callable[[int], Any]]] = {
    "SOURCE_ID (id > 255 bytes)": (
        "id",
        "gong_opportunity_id",
        lambda i: "006" + _noise(2997, i),
        lambda i: "006" + _noise(2997, i),
    ),
    "OWNER_EMAIL (btree entry)": (
        "owner_email",
        "owner_email",
        lambda i: _noise(5000, i) + "@x.com",
        lambda i: _noise(5000, i) + "@x.com",
    ),
    "STAGE (btree entry)": ("stage_name", "stage", lambda i: _noise(5000, i), lambda i: _noise(5000, i)),
    # Rounds to 1e16, which numeric(18,2) cannot hold.
    "AMOUNT (numeric(18,2))": ("amount", "amount", lambda _i: "9999999999999999.995", lambda _i: Decimal("1e16")),
}


def _unchecked(row: OpportunityRow, column: str, value: Any) -> OpportunityRow:
    """``row`` with ``value`` in ``column``, as if no check had looked at it."""
    values = [value if c.name == column else row[c.name] for c in stored.PARSED]
    return OpportunityRow(tuple(values), stored.content_text(values), row.content_hash)


def _timed_write(mapping: PageMapping) -> tuple[float, int]:
    with fresh_database() as url:
        conn = connect_url(url)
        try:
            started = time.perf_counter()
            written = write_page(conn, mapping, [], [], RUN_ID)
            conn.commit()
            return time.perf_counter() - started, written.attempts
        finally:
            conn.close()


def measure(page: Sequence[dict[str, Any]], check: str, bad: int) -> dict[str, Any]:
    """One page with ``bad`` refused values of ``check``, written with and without the check."""
    source_column, stored_column, source_value, parsed_value = BAD[check]
    positions = [len(page) * (k + 1) // (bad + 1) for k in range(bad)]
    source = [dict(r) for r in page]
    for i in positions:
        source[i][source_column] = source_value(i)
    checked = _timed_write(PageMapping(source))
    mapped = transform_page(page)
    by_id = {r.source_id: r for r in mapped.rows}
    rows = list(mapped.rows)
    for i in positions:
        row = by_id[page[i]["id"]]
        rows[rows.index(row)] = _unchecked(row, stored_column, parsed_value(i))
    unchecked = _timed_write(PageMapping.of(rows, mapped.issues))
    return {"checked": checked, "unchecked": unchecked}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.limits", description=__doc__)
    parser.add_argument("--page", type=int, default=2000, help="rows per page (SYNC_PAGE_SIZE default)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per cell; the median is reported")
    parser.add_argument("--bad", default="1,10", help="refused values per page")
    args = parser.parse_args()
    page = [r for r in make_rows(args.page) if not r.get("is_deleted")]
    print(f"page of {len(page)} live rows; median of {args.repeats}; seconds for write + commit (attempts)")
    print(f"{'check':32} {'bad':>4} {'with check':>14} {'without':>16} {'ratio':>7}")
    for check in BAD:
        for bad in (int(b) for b in args.bad.split(",")):
            runs = [measure(page, check, bad) for _ in range(args.repeats)]
            with_s = statistics.median(r["checked"][0] for r in runs)
            without_s = statistics.median(r["unchecked"][0] for r in runs)
            with_n, without_n = runs[0]["checked"][1], runs[0]["unchecked"][1]
            print(
                f"{check:32} {bad:>4} {with_s:>9.3f} ({with_n:>2}) {without_s:>10.3f} ({without_n:>3})"
                f" {without_s / with_s:>6.1f}x",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
