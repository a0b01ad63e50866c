"""Benchmarks through the BigQuery emulator: peak memory of a whole sync, and the source side.

A run evaluates each stream's query once (DuckDB underneath, time proportional to the tables)
and every page then reads a slice of that result; the seeding time is reported so a reader can
tell emulator cost from ours. The source side counts BigQuery jobs per invocation.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.pg import fresh_database
from standins import bigquery as sbq
from standins.generator import generate
from sync.bigquery.source import BigQuerySource
from sync.core.config import Settings
from sync.core.messages import Message
from sync.postgres.db import connect_url
from sync.run.pipeline import Pipeline

ROOT = Path(__file__).resolve().parent.parent

# Runs the command as the only child, then reports its peak RSS (KiB on Linux) and wall time.
RSS_WRAPPER = (
    "import json, resource, subprocess, sys, time; t = time.perf_counter();"
    " p = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
    " print(json.dumps({'rc': p.returncode, 'seconds': time.perf_counter() - t,"
    " 'maxrss_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
    " 'stdout': p.stdout[-400:], 'stderr': p.stderr[-400:]}))"
)


def seed(bq: Any, n: int, tag: str) -> tuple[str, str, float]:
    data = generate(n, metadata_bytes=500)
    sf, gong = f"sf_{tag}", f"gong_{tag}"
    started = time.perf_counter()
    sbq.seed(bq, data, salesforce_dataset=sf, gong_dataset=gong)
    return sf, gong, time.perf_counter() - started


def env_for(endpoint: str, sf: str, gong: str, url: str, page_size: int) -> dict[str, str]:
    return {
        "BIGQUERY_PROJECT": sbq.PROJECT,
        "BIGQUERY_API_ENDPOINT": endpoint,
        "SALESFORCE_DATASET": sf,
        "GONG_DATASET": gong,
        "DATABASE_URL": url,
        "SYNC_PAGE_SIZE": str(page_size),
        "SYNC_TIME_BUDGET_SECONDS": "600",
        # Not a Cloud Function: a whole page must fit one invocation's deadline, never cut short.
        "SYNC_FUNCTION_TIMEOUT_SECONDS": "660",
        "LOG_LEVEL": "WARNING",
    }


def whole_run_rss(env: dict[str, str], root: Path | None = None) -> dict[str, Any]:
    """``python -m sync run --until-done`` in a subprocess (of the checkout at ``root``); its peak RSS via RUSAGE_CHILDREN."""
    cmd = [sys.executable, "-c", RSS_WRAPPER, sys.executable, "-m", "sync", "run", "--until-done"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=root or ROOT, env={**os.environ, **env})
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        msg = f"sync run failed ({result['rc']}): {result['stderr']}"
        raise RuntimeError(msg)
    return result


def frozen(source: Any) -> Any:
    """``source``, with the process frozen as ``sync/run/runtime.py`` freezes it once the clients are built.

    A baseline without that step froze inside its reader, so it is left as it was.
    """
    try:
        from sync.run.runtime import freeze_long_lived
    except ImportError:
        return source
    freeze_long_lived()
    return source


def source_side(bq: Any, env: dict[str, str], pages: int) -> dict[str, Any]:
    """Queries and rows per invocation through the real pipeline, for the first ``pages`` pages."""
    settings = Settings.from_env(env)
    source = frozen(BigQuerySource(bq, settings))
    pipeline = Pipeline(settings, source, lambda: connect_url(env["DATABASE_URL"]))
    per_page: list[int] = []
    message: Message | None = Message.tick()
    while message is not None and len(per_page) < pages:
        before = source.stats.jobs
        outcome = pipeline.handle(message)
        per_page.append(source.stats.jobs - before)
        message = outcome.continuation
    stats = source.stats
    return {
        "queries_per_page": per_page,
        "rows_read": stats.rows,
        "query_seconds": stats.seconds,
        "rows_per_second": stats.rows / stats.seconds if stats.seconds else None,
    }


def run(sizes: list[int], page_size: int, source_pages: int, log_dir: Path) -> dict[str, Any]:
    from bench.pg import ensure_server

    results: dict[str, Any] = {"page_size": page_size, "memory": {}, "seed_seconds": {}}
    admin = ensure_server()
    with sbq.running_emulator(log_dir) as emulator:
        bq = sbq.client(emulator.endpoint)
        for n in sizes:
            sf, gong, seconds = seed(bq, n, f"{n}_{int(time.time())}")
            results["seed_seconds"][n] = seconds
            if n == sizes[0]:
                with fresh_database(admin) as url:
                    results["source"] = source_side(bq, env_for(emulator.endpoint, sf, gong, url, 2000), source_pages)
            with fresh_database(admin) as url:
                results["memory"][n] = whole_run_rss(env_for(emulator.endpoint, sf, gong, url, page_size))
                conn = connect_url(url)
                cur = conn.cursor()
                cur.execute("SELECT count(*) FROM opportunities")
                row = cur.fetchone()
                results["memory"][n]["rows_stored"] = int(row[0]) if row else 0
                conn.close()
            for name in (sf, gong):
                bq.delete_dataset(f"{sbq.PROJECT}.{name}", delete_contents=True, not_found_ok=True)
    results["measured_at"] = dt.datetime.now(dt.UTC).isoformat()
    return results
