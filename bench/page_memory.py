"""Peak RSS of an instance by page size, against the function's memory.

An instance serves one page per invocation and keeps serving (a warm instance runs many), so
the measure is ``python -m sync run --until-done`` at a fixed ``SYNC_PAGE_SIZE`` over a dataset
of several pages at the largest size: its peak RSS is what one instance needs at that page size,
with every import, client and cache of a warm instance. Fitting ``peak = base + per_row * size``
through the points gives the model ``sync/core/memory.py`` holds; the table shows both, so the
constants there can be checked against a fresh measurement.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

from bench.emulated import env_for, seed, whole_run_rss
from bench.pg import fresh_database
from standins import bigquery as sbq
from sync.core import memory


def fit(points: dict[int, float]) -> tuple[float, float]:
    """Least-squares ``(base MiB, MiB per row)`` through ``{page size: peak MiB}``."""
    n = len(points)
    xs, ys = list(points), list(points.values())
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    var = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
    return mean_y - slope * mean_x, slope


def run(rows: int, page_sizes: list[int], log_dir: Path) -> dict[str, Any]:
    from bench.pg import ensure_server

    results: dict[str, Any] = {"rows": rows, "peak_mib": {}, "seconds": {}}
    admin = ensure_server()
    with sbq.running_emulator(log_dir) as emulator:
        bq = sbq.client(emulator.endpoint)
        sf, gong, results["seed_seconds"] = seed(bq, rows, f"mem_{rows}_{int(time.time())}")
        for size in page_sizes:
            with fresh_database(admin) as url:
                env = {**env_for(emulator.endpoint, sf, gong, url, size), "SYNC_TIME_BUDGET_SECONDS": "1200"}
                env["SYNC_FUNCTION_TIMEOUT_SECONDS"] = "1260"
                measured = whole_run_rss(env)
            results["peak_mib"][size] = measured["maxrss_kib"] / 1024
            results["seconds"][size] = measured["seconds"]
    base, per_row = fit(results["peak_mib"])
    results["fit"] = {"base_mib": base, "mib_per_row": per_row}
    results["model"] = {size: memory.peak_mib(size) for size in page_sizes}
    results["measured_at"] = dt.datetime.now(dt.UTC).isoformat()
    return results
