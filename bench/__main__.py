"""``python -m bench``: every benchmark, a results table on stdout, bench/results/latest.json.

Medians of ``--repeats`` runs; ratios are computed from runs made side by side in this process.
Benchmarks are not tests: nothing here fails on a slow number, it reports MET or MISSED.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("write", "cold", "emulated", "pages", "heavy", "storage", "runs", "purge", "bytes", "webhook")


def _require_bench_deps() -> None:
    missing = []
    for module in ("dlt", "psycopg2"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        print(
            f"missing {', '.join(missing)}: run `bash bench/run.sh` (installs requirements-bench.txt into .venv),"
            " or `.venv/bin/pip install -r requirements-bench.txt`",
            file=sys.stderr,
        )
        sys.exit(2)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _write(args: argparse.Namespace, page_sizes: list[int]) -> dict[str, Any]:
    """The write path against COPY and dlt, today's package (and the baseline's) in fresh children."""
    from bench import baseline, write_path
    from bench.data import make_rows

    started = time.perf_counter()
    rows = make_rows(args.rows)
    print(f"generated {len(rows)} joined rows in {time.perf_counter() - started:.1f}s", file=sys.stderr)

    # Today's package is measured in a fresh child too: in this process the COPY payload,
    # the stored rows and dlt would make every full collection walk more than an invocation's.
    def ours() -> dict[str, Any]:
        return baseline.child(baseline.ROOT, {"part": "write", "rows": args.rows, "page_sizes": page_sizes})

    compare = None
    if args.baseline != "none":
        tree = baseline.export(args.baseline)

        def compare() -> dict[str, Any]:
            return baseline.child(tree, {"part": "write", "rows": args.rows, "page_sizes": page_sizes})

    result: dict[str, Any] = write_path.run(rows, args.repeats, page_sizes, with_dlt=not args.no_dlt, ours=ours, baseline=compare)
    del rows
    return result


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--rows", type=int, default=100_000, help="rows for the write path (default 100k)")
    p.add_argument("--repeats", type=int, default=3, help="runs per measurement; the median is reported")
    p.add_argument("--page-sizes", default="2000,100000", help="write_page page sizes to time (first = SYNC_PAGE_SIZE default)")
    p.add_argument("--memory-sizes", default="100000,300000", help="rows seeded in the emulator for the peak-RSS runs")
    p.add_argument("--memory-page-size", type=int, default=10_000, help="SYNC_PAGE_SIZE for the peak-RSS runs")
    p.add_argument("--memory-page-sizes", default="2000,10000,25000,50000", help="SYNC_PAGE_SIZE values, peak RSS by page")
    p.add_argument("--heavy-stages", type=int, default=200, help="stage-history entries per opportunity, heavy-row runs")
    p.add_argument("--heavy-huge", type=int, default=30_000, help="stage-history entries of the one huge opportunity")
    p.add_argument("--heavy-page-sizes", default="2000,3687", help="SYNC_PAGE_SIZE values, heavy-row runs at 256M")
    p.add_argument("--heavy-baseline", default="ea2d0d6", help="commit measured beside today's, heavy-row runs; 'none' to skip")
    p.add_argument("--source-pages", type=int, default=4, help="pipeline pages read for the queries-per-page count")
    p.add_argument("--run-rows", type=int, default=100_000, help="rows for the full-run comparison (old vs new read path)")
    p.add_argument("--purge-sizes", default="100000,1000000", help="source ids for the purge-memory runs")
    p.add_argument("--webhook-samples", type=int, default=20, help="changes synced through each path for --only webhook")
    p.add_argument("--webhook-rows", type=int, default=2000, help="rows in the source for --only webhook")
    p.add_argument("--only", choices=sorted(PARTS), action="append", help="run only these parts")
    p.add_argument("--no-dlt", action="store_true", help="skip the dlt comparison")
    p.add_argument(
        "--baseline",
        default="c3d2d2c",
        help="commit whose sync/ is measured side by side with today's (bench/baseline.py); 'none' to skip",
    )
    p.add_argument("--per-page", action="store_true", help="also run the old per-page read path (bench/legacy.py)")
    return p.parse_args()


def main() -> int:
    args = _parse()
    parts = set(args.only or PARTS)
    if parts != {"webhook"}:  # the webhook part needs only the project's own requirements
        _require_bench_deps()
    # The pipeline logs every skipped row; the bench reports counts instead.
    logging.basicConfig(level=logging.CRITICAL)
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "args": vars(args),
    }
    page_sizes = [int(s) for s in args.page_sizes.split(",") if s]
    if "write" in parts:
        results["write"] = _write(args, page_sizes)
    if "cold" in parts:
        results["cold"] = _cold(args.repeats)
    if "emulated" in parts:
        from bench import emulated

        with tempfile.TemporaryDirectory(prefix="bench-emu-") as log_dir:
            sizes = [int(s) for s in args.memory_sizes.split(",") if s]
            results["emulated"] = emulated.run(sizes, args.memory_page_size, args.source_pages, Path(log_dir))
    if "pages" in parts:
        from bench import page_memory

        with tempfile.TemporaryDirectory(prefix="bench-pages-") as log_dir:
            sizes = [int(s) for s in args.memory_page_sizes.split(",") if s]
            results["pages"] = page_memory.run(args.run_rows, sizes, Path(log_dir))
    if "heavy" in parts:
        results["heavy"] = _heavy(args)
    if "storage" in parts:
        from bench import storage_read

        with tempfile.TemporaryDirectory(prefix="bench-storage-") as log_dir:
            results["storage"] = storage_read.run(args.run_rows, 2000, args.repeats, Path(log_dir))
    if "runs" in parts:
        results["runs"] = _runs(args)
    if "purge" in parts:
        results["purge"] = _purge(args)
    for name, measure in (("bytes", _bytes), ("webhook", _webhook)):
        if name in parts:
            results[name] = measure(args)
    summary = summarize(results, page_sizes)
    results["summary"] = summary
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, default=str))
    print(render(summary, results))
    print(f"\nwritten to {RESULTS / 'latest.json'}")
    return 0


def _cold(repeats: int) -> dict[str, Any]:
    """Cold start against a real tick: a tiny seeded emulator and an already-migrated database."""
    from bench import coldstart, emulated
    from bench.pg import fresh_database, query
    from standins import bigquery as sbq
    from sync.postgres.db import connect_url

    with tempfile.TemporaryDirectory(prefix="bench-cold-") as log_dir, sbq.running_emulator(Path(log_dir)) as emulator:
        bq = sbq.client(emulator.endpoint)
        sf, gong, _ = emulated.seed(bq, 200, f"cold_{int(time.time())}")
        with fresh_database() as url:
            env = emulated.env_for(emulator.endpoint, sf, gong, url, 2000)
            # SYNC_TOPIC is required by main; a one-page run never publishes to it.
            env["SYNC_TOPIC"] = "projects/local-project/topics/opportunity-sync"
            result = coldstart.run(env, max(repeats, 5))
            # HTTP 200 also acks a bad configuration; a recorded run proves real ticks were handled.
            conn = connect_url(url)
            try:
                result["sync_runs_recorded"] = query(conn, "SELECT count(*) FROM sync_runs")[0][0]
            finally:
                conn.close()
            return result


def _bytes(_args: argparse.Namespace) -> dict[str, Any]:
    from bench import bytes_estimate

    return bytes_estimate.estimate()


def _webhook(args: argparse.Namespace) -> dict[str, Any]:
    """Signed sync_end -> row in Postgres, beside tick -> row, on the served local stack."""
    from bench import webhook

    with tempfile.TemporaryDirectory(prefix="bench-webhook-") as log_dir:
        return webhook.run(args.webhook_samples, args.webhook_rows, Path(log_dir))


def _runs(args: argparse.Namespace) -> dict[str, Any]:
    """Whole runs through the emulator, today's package and the baseline's round by round; the idle tick."""
    from bench import baseline, emulated, runs
    from standins import bigquery as sbq

    with tempfile.TemporaryDirectory(prefix="bench-runs-") as log_dir, sbq.running_emulator(Path(log_dir)) as emulator:
        bq = sbq.client(emulator.endpoint)
        tag = str(int(time.time()))
        big_sf, big_gong, seeded = emulated.seed(bq, args.run_rows, f"runs_big_{tag}")
        small_sf, small_gong, _ = emulated.seed(bq, 1500, f"runs_small_{tag}")
        with _pubsub_topic(Path(log_dir)) as topic:
            publisher = None
            if topic is not None:
                from sync.run.publisher import PubSubPublisher

                publisher = PubSubPublisher(topic)
            compare = None
            if args.baseline != "none":
                tree = baseline.export(args.baseline)
                endpoint = emulator.endpoint

                def compare(env: dict[str, str]) -> dict[str, Any]:
                    return baseline.child(tree, {"part": "run", "env": env, "endpoint": endpoint, "topic": topic})

            result = runs.run(
                bq,
                lambda url: emulated.env_for(emulator.endpoint, big_sf, big_gong, url, 2000),
                lambda url: emulated.env_for(emulator.endpoint, small_sf, small_gong, url, 2000),
                rounds=args.repeats,
                baseline=compare,
                publisher=publisher,
                per_page=args.per_page,
            )
        result["rows"], result["seed_seconds"] = args.run_rows, seeded
        result["baseline_commit"] = None if args.baseline == "none" else args.baseline
        result["published_to"] = "Pub/Sub emulator" if topic else "nowhere (no Pub/Sub emulator installed)"
        return result


@contextlib.contextmanager
def _pubsub_topic(log_dir: Path) -> Iterator[str | None]:
    """A topic on the official Pub/Sub emulator, so continuations are really published; None without it."""
    from standins import pubsub as spubsub

    if spubsub.emulator_binary() is None:
        yield None
        return
    emulator = spubsub.start(log_dir)
    os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host
    try:
        from google.cloud import pubsub_v1  # type: ignore[attr-defined]

        topic = pubsub_v1.PublisherClient().topic_path("local-project", "bench-continuations")
        pubsub_v1.PublisherClient().create_topic(name=topic)
        yield topic
    finally:
        os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        emulator.stop()


def _rate(rows: int, seconds: float | None) -> float | None:
    return rows / seconds if seconds else None


def _purge(args: argparse.Namespace) -> dict[str, Any]:
    from bench import purge_memory

    return purge_memory.run([int(n) for n in args.purge_sizes.split(",") if n])


def _heavy(args: argparse.Namespace) -> dict[str, Any]:
    from bench import baseline, heavy_pages

    sizes = [int(s) for s in args.heavy_page_sizes.split(",") if s]
    before = baseline.export(args.heavy_baseline) if args.heavy_baseline != "none" else None
    with tempfile.TemporaryDirectory(prefix="bench-heavy-") as log_dir:
        return heavy_pages.run(2000, args.heavy_stages, args.heavy_huge, sizes, Path(log_dir), before)


def summarize(results: dict[str, Any], page_sizes: list[int]) -> list[dict[str, Any]]:
    """One line per number: value, target and whether it was met."""
    lines: list[dict[str, Any]] = []

    def add(name: str, value: Any, unit: str, target: str = "", met: bool | None = None) -> None:
        lines.append({"measure": name, "value": value, "unit": unit, "target": target, "met": met})

    if results.get("write"):
        _summarize_write(results["write"], page_sizes, add)
    if results.get("cold"):
        _summarize_cold(results["cold"], add)
    if results.get("emulated"):
        _summarize_emulated(results["emulated"], add)
    if results.get("pages"):
        _summarize_pages(results["pages"], add)
    if results.get("heavy"):
        _summarize_heavy(results["heavy"], add)
    if results.get("storage"):
        _summarize_storage(results["storage"], add)
    if results.get("runs"):
        _summarize_runs(results["runs"], add)
    if results.get("purge"):
        _summarize_purge(results["purge"], add)
    if results.get("bytes"):
        _summarize_bytes(results["bytes"], add)
    if results.get("webhook") and "skipped" not in results["webhook"]:
        _summarize_webhook(results["webhook"], add)
    return lines


def _summarize_webhook(w: dict[str, Any], add: Add) -> None:
    n = w["samples"]
    for path, what in (("webhook", "signed sync_end POST"), ("tick", "tick published")):
        add(f"{what} -> row in Postgres, median of {n}", round(w[path]["median_s"], 2), "s")
        add(f"{what} -> row in Postgres, p95 of {n}", round(w[path]["p95_s"], 2), "s")
        add(f"{what}: answered (median)", round(w[path]["trigger_median_s"], 3), "s")
    worst = w["scheduler_worst_case_s"]
    add("scheduler path worst case (*/15 period + slowest tick)", round(worst, 1), "s")
    add("webhook p95 within seconds", round(w["webhook"]["p95_s"], 2), "s", "< 10 s", w["webhook"]["p95_s"] < 10)


Add = Callable[..., None]


def _summarize_write(w: dict[str, Any], page_sizes: list[int], add: Add) -> None:
    n, s = w["rows"], w["samples"]
    b = (w.get("baseline") or {}).get("samples") or {}
    copy = _rate(n, _median(s["copy_limit"]))
    dlt = _rate(n, _median(s["dlt_merge"]))
    add("COPY limit (psycopg2 copy_expert, empty indexed table)", copy, "rows/s")
    if b:
        add("  (baseline lines: the pre-change sync/ in a child, same rounds)", "", "")
    for size in page_sizes:
        ours = _rate(n, _median(s[f"sync_pages_{size}"]))
        add(f"sync write path, pages of {size}", ours, "rows/s")
        theirs = _rate(n, _median(b.get(f"sync_pages_{size}", [])))
        if theirs:
            add(f"  baseline, pages of {size}", theirs, "rows/s")
        if copy and ours:
            before = f" (baseline {theirs / copy:.2f})" if theirs else ""
            add(f"  ratio to COPY limit (pages of {size}){before}", ours / copy, "x", ">= 0.65", ours / copy >= 0.65)
            # Each round times the COPY limit and then the sync within seconds: their ratio pairs
            # measurements that shared the host's state, which the medians of each side do not.
            paired = [c / o for c, o in zip(s["copy_limit"], s[f"sync_pages_{size}"], strict=False) if o]
            if len(paired) > 1:
                add(f"    per round: {', '.join(f'{r:.2f}' for r in paired)}; median", _median(paired), "x")
        if dlt and ours:
            before = f" (baseline {theirs / dlt:.2f})" if theirs else ""
            add(f"  ratio to dlt merge (pages of {size}){before}", ours / dlt, "x", ">= 4", ours / dlt >= 4)
    _per_row(n, s, b, add)
    add("dlt merge (postgres, delete-insert)", dlt, "rows/s")
    rerun = _rate(n, _median(s["unchanged_rerun"]))
    add(f"unchanged rerun, pages of {page_sizes[0]}", rerun, "rows/s")
    if copy and rerun:
        theirs = _rate(n, _median(b.get("unchanged_rerun", [])))
        before = f" (baseline {theirs / copy:.2f})" if theirs else ""
        add(f"  ratio to COPY limit (unchanged rerun){before}", rerun / copy, "x", ">= 0.9", rerun / copy >= 0.9)
        paired = [c / o for c, o in zip(s["copy_limit"], s["unchanged_rerun"], strict=False) if o]
        if len(paired) > 1:
            add(f"    per round: {', '.join(f'{r:.2f}' for r in paired)}; median", _median(paired), "x")
    fp = w["rerun_footprint"]
    zero = all(
        d["tuples_inserted"] == 0
        and d["tuples_updated"] == 0
        and d["tuples_deleted"] == 0
        and d["sequence_values_used"] == 0
        and not d["row_versions_replaced"]
        and not d["rows_locked_or_deleted"]
        for d in fp
    )
    worst = {k: max(d[k] for d in fp) for k in fp[0]} if fp else {}
    shown = "/".join(str(int(v)) for v in worst.values())
    add("  rerun writes: tuples ins/upd/del, seq, xmin, xmax changed", shown, "", "0/0/0/0/0/0", zero)


def _per_row(n: int, s: dict[str, Any], b: dict[str, Any], add: Add) -> None:
    """Where a row's time goes: transform, encoding, and the sink (the wire and Postgres' merge)."""

    def us(samples: dict[str, Any], key: str) -> float | None:
        value = _median(samples.get(key, []))
        return value / n * 1e6 if value else None

    for key, label in (
        ("sync_pages_2000", "whole write path, pages of 2000"),
        ("transform_only", "  transform_page (validation, hashing)"),
        ("sink_only", "  sink alone (write_page of rows mapped beforehand + commit)"),
        ("encode_only", "    of which COPY text encoding"),
    ):
        mine, theirs = us(s, key), us(b, key)
        if mine is None:
            continue
        shown = f"{mine:.1f}" + (f" / {theirs:.1f}" if theirs else "")
        add(f"per row: {label}{': today / baseline' if theirs else ''}", shown, "us/row")
    sink, encode = us(s, "sink_only"), us(s, "encode_only")
    if sink and encode:
        add("    of which the wire and Postgres (sink - encoding), today", sink - encode, "us/row")
    whole, transform = us(s, "sync_pages_2000"), us(s, "transform_only")
    if whole and transform and sink:
        # sync/postgres/writer.py maps a page's new rows while Postgres stores the ones before.
        add("  overlap: mapping while Postgres stores (transform + sink - whole), today", transform + sink - whole, "us/row")


def _summarize_cold(c: dict[str, Any], add: Add) -> None:
    bare = _median(c["samples"]["bare_import_functions_framework"])
    imp = _median(c["samples"]["import_main"])
    first = _median(c["samples"]["first_message"])
    add("cold: bare `import functions_framework`", bare, "s")
    add("cold: import main", imp, "s")
    add("cold: import main + first tick handled", first, "s")
    add("  HTTP status of first message", sorted(set(c["http_status"])), "", "200", set(c["http_status"]) == {200})
    add("  runs recorded by those ticks", c.get("sync_runs_recorded"), "", ">= 1", bool(c.get("sync_runs_recorded")))
    add("  heavy imports (package: s)", ", ".join(f"{k} {v:.2f}" for k, v in c["heavy_imports"][:6]), "")
    add("  heavy modules loaded by import main", [k for k, v in c["loaded_after_import_main"].items() if v], "")


def _summarize_pages(p: dict[str, Any], add: Add) -> None:
    from sync.core import memory

    peaks = {int(k): v for k, v in p["peak_mib"].items()}
    for size, peak in sorted(peaks.items()):
        model = memory.peak_mib(size)
        add(f"peak RSS, pages of {size} ({p['rows']} rows)", peak, "MiB", f"<= model {model:.0f}", peak <= model)
        need = peak * memory.HEADROOM
        add(f"  with {memory.HEADROOM - 1:.0%} headroom", need, "MiB")
    fit = p["fit"]
    add("  least-squares fit: base", fit["base_mib"], "MiB", f"model {memory.BASE_MIB:.0f}")
    add("  least-squares fit: per row", fit["mib_per_row"] * 1024, "KiB", f"model {memory.MIB_PER_ROW * 1024:.1f}")


def _summarize_heavy(h: dict[str, Any], add: Add) -> None:
    from sync.core import memory

    limit = memory.parse_memory_mib(h["memory"]) or 0.0
    goal = limit / memory.HEADROOM
    what = f"{h['rows']} rows, {h['stages']} stages each, one {h['huge_stages']}"
    for label, runs in h["runs"].items():
        for size, run in sorted(runs.items(), key=lambda kv: int(kv[0])):
            peak = run["peak_mib"]
            name = f"peak RSS at {h['memory']}, heavy rows ({what}), pages of {size}, {label}"
            add(name, peak, "MiB", f"<= {goal:.0f} ({limit:.0f} less {memory.HEADROOM - 1:.0%})", peak <= goal)


def _summarize_storage(r: dict[str, Any], add: Add) -> None:
    imports = r["imports"]
    extra = imports["main + bigquery_storage + pyarrow"] - imports["main"]
    add("cold start: import main", imports["main"], "s")
    add("  + bigquery_storage + pyarrow", extra, "s")
    for label in ("one_page", "full"):
        x = r[label]
        wins = x["storage_seconds"] + extra < x["rest_seconds"]
        add(f"read {x['rows']} rows: getQueryResults-style JSON pages", x["rest_seconds"], "s")
        add("  Storage Read API (Arrow), plus its import", x["storage_seconds"] + extra, "s", "wins", wins)


def _summarize_emulated(e: dict[str, Any], add: Add) -> None:
    # Keys are ints in process and strings once read back from latest.json.
    mem = {int(k): v for k, v in e["memory"].items()}
    seeded = {int(k): v for k, v in e["seed_seconds"].items()}
    rss = {int(k): v["maxrss_kib"] / 1024 for k, v in mem.items()}
    for k, v in sorted(rss.items()):
        add(f"peak RSS, whole run of {k} rows (page {e['page_size']})", v, "MiB", "< 256", v < 256)
        add(f"  wall time of that run ({mem[k]['rows_stored']} stored)", mem[k]["seconds"], "s")
        add(f"  emulator seeding of {k} rows", seeded[k], "s")
    if len(rss) >= 2:
        lo, hi = min(rss.values()), max(rss.values())
        add("  peak RSS spread (max/min - 1)", hi / lo - 1, "", "<= 0.10", hi / lo - 1 <= 0.10)
    src = e.get("source")
    if src:
        q = src["queries_per_page"]
        later = q[1:] or [0]
        add("source: jobs on the first page (probe + 2 evaluations + 2 schema look-ups)", q[0], "", "<= 4 + 2", q[0] <= 6)
        add("source: jobs per later page (slices of the run's result)", max(later), "", "0", max(later) == 0)
        add("source: rows/s through the client (emulator)", src["rows_per_second"], "rows/s")


def _summarize_runs(r: dict[str, Any], add: Add) -> None:
    for key, label in (("one_page", "1 page"), ("new", f"{r['new']['pages']} pages")):
        run = r[key]
        own = run["bigquery_jobs"] - run["schema_lookups"]
        add(f"BigQuery jobs, run of {label} (+{run['schema_lookups']} schema look-ups)", own, "jobs", "<= 4", own <= 4)
    new, base = r["new"], r.get("base")
    rounds = len(r.get("new_rounds", [])) or 1
    add(f"full run of {r['rows']} rows, today (median of {rounds})", new["seconds"], "s")
    if base:
        add(f"full run, baseline {r['baseline_commit']} (same bench run, interleaved)", base["seconds"], "s")
        ratio = base["seconds"] / new["seconds"]
        add("  speed-up, baseline / today", ratio, "x", ">= 2", ratio >= 2)
        same = new["rows_stored"] == base["rows_stored"]
        add("  rows stored: today / baseline", f"{new['rows_stored']} / {base['rows_stored']}", "", "equal", same)
        ours_new, ours_base = _outside_emulator(new), _outside_emulator(base)
        if ours_new and ours_base:
            label = "  outside the emulator (wall - job wait - read_slice): today / baseline"
            add(label, f"{ours_new:.1f} / {ours_base:.1f}", "s")
            add("    speed-up of the sync's own part", ours_base / ours_new, "x")
    _summarize_breakdown(new.get("breakdown"), base.get("breakdown") if base else None, new["pages"], add)
    if r.get("old"):
        old = r["old"]
        add(f"full run, old per-page read path ({old['pages']} pages, bench/legacy.py)", old["seconds"], "s")
        add(
            f"  BigQuery jobs at the client: today / per-page ({old['pages']} pages)",
            f"{new['jobs_at_client']} / {old['jobs_at_client']}",
            "",
        )
    idle = r["idle_tick"]
    add("idle tick: queries (the probe)", idle["queries"], "", "1", idle["queries"] == 1)
    add("  columns it read", ", ".join(idle["columns_read"]), "")
    add("  non-stamp columns read", ", ".join(idle["non_stamp_columns"]) or "none", "", "none", not idle["non_stamp_columns"])
    add("  continuations published to", r.get("published_to", "nowhere"), "")


def _outside_emulator(run: dict[str, Any]) -> float | None:
    """The run's wall time less what the emulator spends: running jobs and rendering result pages.

    ``read_slice`` is charged with the HTTP calls that bring a slice's JSON (most of it the
    emulator turning its result into JSON, bench/README.md); parsing that JSON is charged to
    ``result read/rows`` and stays in.
    """
    breakdown = run.get("breakdown")
    if not breakdown:
        return None
    parts = breakdown["parts"]
    return float(breakdown["wall_seconds"] - parts.get("job wait/jobs", 0.0) - parts.get("result read/job look-up", 0.0))


def _summarize_breakdown(new: dict[str, Any] | None, base: dict[str, Any] | None, pages: int, add: Add) -> None:
    """The run by phase, today and baseline side by side (bench/phases.py)."""
    if not new:
        return
    from bench.phases import PHASES

    wall = new["wall_seconds"]
    for phase in PHASES:
        mine = new["phases"].get(phase, 0.0)
        theirs = f" / {base['phases'].get(phase, 0.0):.1f}" if base else ""
        add(f"  {phase}: today{' / baseline' if base else ''} (today's share)", f"{mine:.1f}{theirs} ({mine / wall:.0%})", "s")
    share = new["covered_share"]
    add("  phases cover of the wall time", share, "", ">= 0.95", share >= 0.95)
    fixed = new["bookkeeping_publish_share"]
    add("  bookkeeping + publish, share of the run", fixed, "", "<= 0.10", fixed <= 0.10)
    theirs = f" / {base['fixed_seconds_per_page'] * 1000:.0f}" if base else ""
    add(
        f"  fixed cost per page (bookkeeping + publish / {pages} pages): today{' / baseline' if base else ''}",
        f"{new['fixed_seconds_per_page'] * 1000:.0f}{theirs}",
        "ms",
    )
    parts = sorted(new["parts"].items(), key=lambda kv: -kv[1])
    add("  parts, today (s)", ", ".join(f"{k} {v:.2f}" for k, v in parts if v >= 0.05), "")


def _summarize_purge(p: dict[str, Any], add: Add) -> None:
    sizes = {int(k): v for k, v in p["sizes"].items()}
    rss = {n: v["purge"]["maxrss_kib"] / 1024 for n, v in sorted(sizes.items())}
    for n, v in rss.items():
        add(f"purge step peak RSS, {n} source ids (anti-join)", v, "MiB")
        add(f"  recording them, a page of {p['page']} per transaction", sizes[n]["record"]["maxrss_kib"] / 1024, "MiB")
        add("  before: every id in one Python list", sizes[n]["purge_list"]["maxrss_kib"] / 1024, "MiB")
    if len(rss) >= 2:
        spread = max(rss.values()) / min(rss.values()) - 1
        add("  purge peak RSS spread (max/min - 1)", spread, "", "<= 0.10", spread <= 0.10)


def _summarize_bytes(b: dict[str, Any], add: Add) -> None:
    add("bytes billed per day, before (bench/bytes_estimate.py)", b["before"]["per_day"] / 1e9, "GB")
    add(f"  after, Fivetran syncing {b['fivetran_syncs_per_day']}x a day", b["after"]["per_day"] / 1e9, "GB")
    add("  full resync, before / after", f"{b['full_resync']['before'] / 1e9:.1f} / {b['full_resync']['after'] / 1e9:.2f}", "GB")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
    return str(value)


def render(lines: list[dict[str, Any]], results: dict[str, Any]) -> str:
    head = f"opportunity-sync bench, {results['date']}, {results['machine']['cores']} cores"
    out = [f"{head}, medians of {results['args']['repeats']}"]
    width = max(len(x["measure"]) for x in lines) if lines else 10
    out.append(f"{'measure':<{width}}  {'value':>14}  {'unit':<6}  {'target':<9}  result")
    for x in lines:
        verdict = "" if x["met"] is None else ("MET" if x["met"] else "MISSED")
        out.append(f"{x['measure']:<{width}}  {_fmt(x['value']):>14}  {x['unit']:<6}  {x['target']:<9}  {verdict}")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
