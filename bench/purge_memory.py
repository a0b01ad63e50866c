"""Peak memory of the full resync's purge, from 100k to 1M source ids (a synthetic id stream).

Each measurement is a fresh interpreter, as a Cloud Functions invocation is, started by a small
wrapper that reads its peak RSS from ``RUSAGE_CHILDREN``: Linux carries ``ru_maxrss`` across
``fork``/``exec``, so a child started straight from this (large) process would report at least
this process's size. The database holds N live opportunities; the source is N ids with
1 % gone, so the purge really soft-deletes something.

- **record** (now): one page's worth of ids (2,000) COPYed into ``sync_run_source_ids``, as
  every page of a full run does in its own transaction; repeated for all N in this process.
- **purge** (now): the last invocation's step, one anti-join.
- **purge, list in memory** (before): every id read into one Python list, COPYed into a temp
  table, then the same anti-join, which is what the last invocation did until now.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.emulated import RSS_WRAPPER
from bench.pg import fresh_database
from sync.postgres.db import connect_url

ROOT = Path(__file__).resolve().parent.parent
RUN = "00000000-0000-0000-0000-0000000000b1"

_CHILD = r"""
import json, sys, time, uuid
from sync.postgres import purge
from sync.postgres.db import connect_url
mode, url, n, page = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
run = uuid.UUID(sys.argv[5])

def ids():
    # 1 % of the stored rows are gone from the source: every 100th id is not streamed.
    return (f"006{i:012d}" for i in range(n) if i % 100 != 7)

started = time.perf_counter()
conn = connect_url(url)
result = None
if mode == "record":
    batch = []
    for i in ids():
        batch.append(i)
        if len(batch) == page:
            purge.record(conn, run, batch)
            conn.commit()
            batch = []
    purge.record(conn, run, batch)
    conn.commit()
elif mode == "purge":
    result = purge.purge(conn, run)
    conn.commit()
elif mode == "purge_list":
    from sync.rows import encoding
    every = list(ids())
    cur = conn.cursor()
    cur.execute("CREATE TEMP TABLE stage_source_ids (gong_opportunity_id text PRIMARY KEY) ON COMMIT DELETE ROWS")
    cur.execute("COPY stage_source_ids (gong_opportunity_id) FROM STDIN",
                stream=encoding.chunks(encoding.text(i) + "\n" for i in every))
    cur.execute("UPDATE opportunities o SET deleted_at = now() WHERE o.deleted_at IS NULL AND NOT EXISTS"
                " (SELECT 1 FROM stage_source_ids s WHERE s.gong_opportunity_id = o.gong_opportunity_id)")
    result = cur.rowcount
    conn.rollback()
conn.close()
print(json.dumps({"seconds": time.perf_counter() - started, "purged": getattr(result, "rows", result)}))
"""


def _child(mode: str, url: str, n: int, page: int) -> dict[str, Any]:
    cmd = [sys.executable, "-c", RSS_WRAPPER, sys.executable, "-c", _CHILD, mode, url, str(n), str(page), RUN]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    wrapped: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if wrapped["rc"] != 0:
        msg = f"purge bench child {mode} failed ({wrapped['rc']}): {wrapped['stderr']}"
        raise RuntimeError(msg)
    result: dict[str, Any] = json.loads(wrapped["stdout"].strip().splitlines()[-1])
    return {**result, "maxrss_kib": wrapped["maxrss_kib"]}


def _seed(url: str, n: int) -> None:
    conn = connect_url(url)
    try:
        cur = conn.cursor()
        cur.execute(
            "INSERT INTO opportunities (gong_opportunity_id, name, content_hash)"
            " SELECT '006' || lpad(g::text, 12, '0'), 'n', '\\x01' FROM generate_series(0, %s - 1) g",
            (n,),
        )
        cur.execute("ANALYZE opportunities")
        conn.commit()
    finally:
        conn.close()


def run(sizes: list[int], page: int = 2000) -> dict[str, Any]:
    """Peak RSS per mode and size."""
    results: dict[str, Any] = {"page": page, "sizes": {}}
    for n in sizes:
        with fresh_database() as url:
            started = time.perf_counter()
            _seed(url, n)
            seeded = time.perf_counter() - started
            before = _child("purge_list", url, n, page)  # rolls back: the table is unchanged for the rest
            record = _child("record", url, n, page)
            after = _child("purge", url, n, page)
        results["sizes"][n] = {"seed_seconds": seeded, "record": record, "purge": after, "purge_list": before}
        expected = n // 100 + (1 if n % 100 > 7 else 0)
        if after["purged"] != expected or before["purged"] != expected:
            msg = f"purge of {n} ids soft-deleted {after['purged']} / {before['purged']}, expected {expected}"
            raise RuntimeError(msg)
    return results
