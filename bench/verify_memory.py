"""Peak memory and time of ``python -m sync verify`` (``python -m bench.verify_memory``).

Each measurement is a fresh interpreter under the RSS wrapper of ``bench/emulated.py``
(``RUSAGE_CHILDREN`` carries ``ru_maxrss`` across fork/exec, so the wrapper must be small):

- **synthetic** (100k and 1M): a database loaded through the sync's own transform and sink
  with N opportunities (every third with a call link), then ``sync.ops.verify.verify`` in a child
  whose source is a synthetic stream of the same N joined rows, generated slice by slice, with
  one row in 1,000 renamed so the comparison has drift to find (checked). This measures our
  side of verify (transform, recall, COPY into temp tables, the comparison) without the
  emulator, which cannot hold 1M joined rows here in reasonable time.
- **full** (100k): the BigQuery emulator seeded with ``generate(N, metadata_bytes=500)``,
  synced by ``python -m sync run --until-done``, then ``python -m sync verify --json`` with
  slices of 2,000 (the default) and 10,000 rows: the whole path, one evaluation per stream,
  read through the real client.

Postgres's own memory is not in these numbers (another process); the temp tables' size on
disk is reported instead.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.emulated import RSS_WRAPPER, env_for, seed, whole_run_rss
from bench.pg import fresh_database
from sync.postgres.db import connect_url

ROOT = Path(__file__).resolve().parent.parent
SLICE = 10_000

# Joined rows in the shape sync/bigquery/source_sql.py returns, built one at a time from their index.
_ROWS = r"""
import datetime as dt
from decimal import Decimal
BASE = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
DETAILS = '{"id":"001%012d","name":"Account %d","description":"' + "lorem ipsum " * 40 + '"}'
HISTORY = ('[{"stage":"Prospecting","changed_at":"2026-09-01T00:00:00Z"},'
           '{"stage":"Qualification","changed_at":"2026-09-02T00:00:00Z"}]')

def opportunity(i, renamed=False):
    stamp = BASE + dt.timedelta(seconds=i)
    account = i % 20000
    return {
        "id": f"006{i:012d}", "name": f"Deal {i}" + (" renamed" if renamed else ""), "account_id": f"001{account:012d}",
        "owner_id": f"005{i % 200:012d}", "stage_name": ("Prospecting", "Qualification", "Closed Won")[i % 3],
        "amount": Decimal(i % 500000) / 100, "close_date": dt.date(2026, 1, 1) + dt.timedelta(days=i % 365),
        "is_deleted": i % 50 == 0, "last_modified": stamp, "account_name": f"Account {account}",
        "account_details": DETAILS % (account, account), "account_found": True, "owner_email": f"rep{i % 200}@example.com",
        "owner_found": True, "owner_active": i % 7 != 0, "stage_history": HISTORY, "health_score": Decimal(i % 100),
        "change_stamp": stamp, "future_total": 0 if i == 0 else None,
    }

def link(i):
    return {"call_id": f"call-{i:08d}", "object_id": f"006{i:012d}", "deleted": False, "stamp": BASE + dt.timedelta(seconds=i)}
"""

_LOAD = (
    _ROWS
    + r"""
import sys
from sync.postgres.db import connect_url
from sync.postgres.writer import write_page
from sync.rows.transform import PageMapping, transform_links
url, n = sys.argv[1], int(sys.argv[2])
conn = connect_url(url)
for start in range(0, n, 10000):
    ids = range(start, min(n, start + 10000))
    links = transform_links(link(i) for i in ids if i % 3 == 0)
    write_page(conn, PageMapping([opportunity(i) for i in ids]), links.links, [], "00000000-0000-0000-0000-0000000000c1")
    conn.commit()
conn.close()
"""
)

_VERIFY = (
    _ROWS
    + r"""
import json, sys, time
from sync.postgres.db import connect_url
from sync.bigquery.streams import StreamKind
from sync.ops.verify import verify
url, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

class Synthetic:
    def whole(self, stream, *, slice_rows, deadline, cost):
        cost.add_job(None, None)  # the one evaluation a real source would run
        make = (lambda i: opportunity(i, renamed=i % 1000 == 1)) if stream is StreamKind.OPPORTUNITIES else link
        ids = range(n) if stream is StreamKind.OPPORTUNITIES else range(0, n, 3)
        batch = []
        for i in ids:
            batch.append(make(i))
            if len(batch) == slice_rows:
                yield batch
                batch = []
        if batch:
            yield batch

conn = connect_url(url)
result = verify(Synthetic(), conn, slice_rows=size, deadline=time.monotonic() + 3600)
cur = conn.cursor()
cur.execute("SELECT pg_total_relation_size('verify_rows') + pg_total_relation_size('verify_links')")
temp_bytes = cur.fetchone()[0]
conn.close()
print(json.dumps({"counts": result.counts, "seconds": result.seconds, "temp_bytes": temp_bytes,
                  "source_rows": result.source_rows, "jobs": result.bigquery_jobs}))
"""
)


def _wrapped(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """``cmd`` under the RSS wrapper; its peak RSS, wall time, and its last stdout line as JSON."""
    out = subprocess.run(
        [sys.executable, "-c", RSS_WRAPPER.replace("p.stdout[-400:]", "p.stdout"), *cmd],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    wrapped: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if wrapped["rc"] not in {0, 1}:  # verify exits 1 on drift
        msg = f"{cmd[:4]} failed ({wrapped['rc']}): {wrapped['stderr']}"
        raise RuntimeError(msg)
    body = wrapped["stdout"].strip()
    result = json.loads(body[body.find("{") :]) if body else {}
    return {"maxrss_mib": round(wrapped["maxrss_kib"] / 1024, 1), "wall_seconds": round(wrapped["seconds"], 1), "result": result}


def synthetic(n: int) -> dict[str, Any]:
    with fresh_database() as url:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", _LOAD, url, str(n)], check=True, cwd=ROOT)
        loaded = time.perf_counter() - started
        measured = _wrapped([sys.executable, "-c", _VERIFY, url, str(n), str(SLICE)])
    expected = sum(1 for i in range(1, n, 1000) if i % 50 != 0)
    if measured["result"]["counts"]["changed"] != expected or sum(measured["result"]["counts"].values()) != expected:
        msg = f"synthetic verify of {n} rows found {measured['result']['counts']}, expected {expected} changed"
        raise RuntimeError(msg)
    return {"load_seconds": round(loaded, 1), **measured}


def full(n: int, slices: tuple[int, ...] = (2000, SLICE)) -> dict[str, Any]:
    from standins import bigquery as sbq

    with tempfile.TemporaryDirectory(prefix="bench-verify-") as log_dir, sbq.running_emulator(Path(log_dir)) as emulator:
        bq = sbq.client(emulator.endpoint)
        sf, gong, seeded = seed(bq, n, f"verify_{n}_{uuid.uuid4().hex[:6]}")
        with fresh_database() as url:
            env = env_for(emulator.endpoint, sf, gong, url, SLICE)
            synced = whole_run_rss(env)
            by_slice = {
                size: _wrapped([sys.executable, "-m", "sync", "verify", "--json", "--slice-rows", str(size)], env)
                for size in slices
            }
            measured = by_slice[slices[0]]  # verify's default slice
            conn = connect_url(url)
            cur = conn.cursor()
            cur.execute("SELECT count(*) FROM opportunities")
            stored = cur.fetchone()
            conn.close()
    if measured["result"].get("drift") != 0:
        msg = f"verify after a clean sync of {n} rows found drift: {measured['result'].get('counts')}"
        raise RuntimeError(msg)
    r = measured["result"]
    kept = ("drift", "source_rows", "source_live", "postgres_live", "source_links", "bigquery_jobs", "seconds")
    summary = {k: r[k] for k in kept}
    return {
        "seed_seconds": round(seeded, 1),
        "sync": {"maxrss_mib": round(synced["maxrss_kib"] / 1024, 1), "seconds": round(synced["seconds"], 1)},
        "rows_stored": stored[0] if stored else 0,
        "maxrss_mib": measured["maxrss_mib"],
        "wall_seconds": measured["wall_seconds"],
        "by_slice_rows": {size: {k: m[k] for k in ("maxrss_mib", "wall_seconds")} for size, m in by_slice.items()},
        "result": summary,
    }


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.verify_memory", description=__doc__)
    p.add_argument("--synthetic", default="100000,1000000", help="sizes for the synthetic-stream runs")
    p.add_argument("--full", default="100000", help="sizes for the full emulator path")
    args = p.parse_args()
    results: dict[str, Any] = {"slice_rows": SLICE, "synthetic": {}, "full": {}}
    for n in (int(s) for s in args.synthetic.split(",") if s):
        results["synthetic"][n] = synthetic(n)
        print(f"synthetic {n}: {json.dumps(results['synthetic'][n])}", file=sys.stderr)
    for n in (int(s) for s in args.full.split(",") if s):
        results["full"][n] = full(n)
        print(f"full {n}: {json.dumps(results['full'][n])}", file=sys.stderr)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
