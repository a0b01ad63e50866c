"""Peak RSS of a whole run whose rows weigh much more than the page-size model assumes.

``sync/core/memory.py`` models a page's peak per row, fitted on rows with about 500 B of metadata.
An opportunity with years of stage history carries that history as JSON text in its row: here
2,000 opportunities with ``--heavy-stages`` (default 200) stage-history entries each and one with
``--huge-stages`` (default 30,000). ``python -m sync run --until-done`` syncs them with
``SYNC_FUNCTION_MEMORY=256M`` at each page size the configuration accepts there (the default
2,000 and the largest), under the ``RUSAGE_CHILDREN`` wrapper; the peak is compared with what
the function has (256M is 244 MiB).

The same runs are made by ``sync/`` of the ``--baseline`` commit (``bench/baseline.py``), the
code before pages were bounded by bytes, on the same seeded source.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

from bench.emulated import env_for, whole_run_rss
from bench.pg import fresh_database
from standins import bigquery as sbq
from standins.generator import BASE_TIME, STAGES, FivetranData, generate

MEMORY = "256M"


def heavy_data(n: int, stages: int, huge: int) -> FivetranData:
    """``n`` opportunities with ``stages`` history entries each, the first with ``huge``."""
    data = generate(n, metadata_bytes=500)
    history = data.rows("opportunity_history")
    history.clear()
    for i, opp in enumerate(data.rows("opportunity")):
        for h in range(huge if i == 0 else stages):
            history.append(
                {
                    "id": f"008{i:08d}{h:06d}",
                    "opportunity_id": opp["id"],
                    "stage_name": STAGES[h % len(STAGES)],
                    "amount": opp["amount"],
                    "close_date": opp["close_date"],
                    "created_date": (BASE_TIME - dt.timedelta(days=3000) + dt.timedelta(hours=h)).isoformat(),
                    "is_deleted": False,
                    "_fivetran_synced": opp["_fivetran_synced"],
                }
            )
    return data


def run(n: int, stages: int, huge: int, page_sizes: list[int], log_dir: Path, baseline: Path | None = None) -> dict[str, Any]:
    """Peak RSS and seconds of a whole run per page size, by today's ``sync/`` and the baseline's."""
    from bench.pg import ensure_server

    results: dict[str, Any] = {"rows": n, "stages": stages, "huge_stages": huge, "memory": MEMORY, "runs": {}}
    trees: dict[str, Path | None] = {"today": None, **({"baseline": baseline} if baseline else {})}
    admin = ensure_server()
    with sbq.running_emulator(log_dir) as emulator:
        bq = sbq.client(emulator.endpoint)
        tag = f"heavy_{int(time.time())}"
        sf, gong = f"sf_{tag}", f"gong_{tag}"
        started = time.perf_counter()
        sbq.seed(bq, heavy_data(n, stages, huge), salesforce_dataset=sf, gong_dataset=gong)
        results["seed_seconds"] = time.perf_counter() - started
        for label, tree in trees.items():
            for size in page_sizes:
                with fresh_database(admin) as url:
                    env = {**env_for(emulator.endpoint, sf, gong, url, size), "SYNC_FUNCTION_MEMORY": MEMORY}
                    measured = whole_run_rss(env, root=tree)
                run = {"peak_mib": measured["maxrss_kib"] / 1024, "seconds": measured["seconds"]}
                results["runs"].setdefault(label, {})[size] = run
    results["measured_at"] = dt.datetime.now(dt.UTC).isoformat()
    return results
