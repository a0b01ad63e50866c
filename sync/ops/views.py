"""What an operator reads: the status sheet, the runs and rejections tables, the preview.

Each label says what it counts, in the words the docs use (docs/operations.md). A row read by a
run is counted exactly once: inserted, updated, unchanged, skipped, deleted (soft-deleted now),
or deleted in the source and never stored, so those six add up to the rows read. "Written" is
inserted + updated + deleted, what ``sync_status.items_synced`` holds. ``--json`` output is the
query's own rows (``sync/ops/report.py``); these views only choose and word what a terminal shows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from sync.ops import report, tables
from sync.ops.tables import Column

MISSING_ROW = "sync_status has no 'opportunities' row (it was deleted)"
# How many of the next page's rejections the preview lists; --json has them all.
_PREVIEW_ISSUES = 10


def _when(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")
    return str(value)


def _short_id(value: Any) -> str:
    return str(value)[:8]


RUN_COLUMNS = (
    Column("started_at", "started (UTC)", show=_when),
    Column("run_id", "run", show=_short_id),
    Column("trigger", "trigger"),
    Column("status", "status"),
    Column("pages", "pages", "right"),
    Column("rows_read", "read", "right"),
    Column("rows_written", "written", "right"),
    Column("rows_skipped", "skipped", "right"),
    Column("error", "error", flex=True, min_width=10),
)

REJECTION_COLUMNS = (
    # No run column: `rejections --run ID` picks a run, and --wide shows run_id.
    Column("rejected_at", "rejected (UTC)", show=_when),
    Column("source_id", "source id", cap=24),
    Column("kind", "kind"),
    Column("reason", "reason", cap=28),
    Column("field_values", "values", flex=True, min_width=10),
)

_ISSUE_COLUMNS = (
    Column("source_id", "source id", cap=24),
    Column("kind", "kind"),
    Column("reason", "reason", cap=28),
    Column("values", "values", flex=True, min_width=10),
)


def written(run: Mapping[str, Any]) -> int:
    """Rows a run wrote: inserted + updated + soft-deleted (what ``items_synced`` counts)."""
    return int(run["rows_inserted"]) + int(run["rows_updated"]) + int(run["rows_deleted"])


def runs_table(rows: Sequence[Mapping[str, Any]], out: TextIO, *, wide: bool) -> None:
    if wide:
        tables.render(rows, tables.all_columns(rows), out, width=None)
        return
    shown = [{**r, "rows_written": written(r)} for r in rows]
    tables.render(shown, RUN_COLUMNS, out, width=tables.width_for(out))


def rejections_table(rows: Sequence[Mapping[str, Any]], out: TextIO, *, wide: bool) -> None:
    if wide:
        tables.render(rows, tables.all_columns(rows), out, width=None)
    else:
        tables.render(rows, REJECTION_COLUMNS, out, width=tables.width_for(out))


def row_counts(run: Mapping[str, Any]) -> tuple[str, str]:
    """Where each row a run read went, in words, on two lines; the counts add up to the rows read."""
    held = f", {run.get('rows_held')} deletes held" if run.get("rows_held") else ""
    return (
        f"{run.get('rows_read')} read: {run.get('rows_inserted')} inserted, {run.get('rows_updated')} updated,"
        f" {run.get('rows_unchanged')} unchanged, {run.get('rows_skipped')} skipped,",
        f"{run.get('rows_deleted')} soft-deleted, {run.get('rows_deleted_not_stored')} deleted in the source and never stored"
        + held,
    )


_HELD_KIND = {"purge": "purge", "source_deletes": "source deletes"}


def held_deletes(holds: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per hold (how many deletes of what kind, by which run, against how many live rows), then what to do."""
    if not holds:
        return ["-"]
    lines = []
    for h in holds:
        state = "held" if h["released_at"] is None else f"up to {h['approved']} approved, {h['state'].removeprefix('released, ')}"
        kind = _HELD_KIND.get(h["kind"], h["kind"])
        lines.append(f"{h['rows_held']} ({kind}) by run {_short_id(h['run_id'])} of {h['live_rows']} live rows: {state}")
    if any(h["released_at"] is None for h in holds):
        lines.append("look, then: python -m sync release-deletes")
    return lines


def status_sheet(data: Mapping[str, Any], out: TextIO) -> None:
    opp = data.get("opportunities", {})
    last = data.get("last_run") or {}
    run_id = data.get("run_id")
    lines = [
        ("status", data.get("status")),
        ("watermark (newest change synced)", data.get("last_sync_timestamp")),
        ("watermark age", _duration(data.get("lag_seconds"))),
        ("rows written (latest run)", data.get("items_synced")),
        ("rows skipped (latest run)", data.get("error_count")),
        ("last error", data.get("last_error") or "-"),
        ("run in progress", f"{run_id} ({data.get('run_trigger')}, next page {data.get('run_next_page')})" if run_id else "-"),
        ("invocation in flight now", "yes" if data.get("in_flight") else "no"),
        # Set after a page timed out; it doubles back to SYNC_PAGE_SIZE as pages commit.
        ("page size limit", data.get("page_size_limit") or "- (SYNC_PAGE_SIZE)"),
        (
            "opportunities in Postgres",
            f"{opp.get('live', 0)} live, {opp.get('deleted', 0)} soft-deleted, {opp.get('call_links', 0)} call links",
        ),
        ("latest run", f"{last['run_id']} {last['trigger']} {last['status']}, {last['pages']} pages" if last else "-"),
        *zip(("latest run's rows", ""), row_counts(last) if last else ("-",), strict=False),
        ("latest run's call links", f"+{last.get('links_added')} -{last.get('links_removed')}" if last else "-"),
        ("latest run's BigQuery cost", _cost(last) if last else "-"),
        ("source built from", _shape(data.get("source_shape"))),
        (
            "next new run will",
            "; ".join(f"{r['kind'].replace('_', ' ')} ({r['reason']})" for r in data.get("pending_requests") or []) or "-",
        ),
        *zip(("deletes held", *[""] * 9), held_deletes(data.get("held_deletes") or []), strict=False),
    ]
    width = max(len(k) for k, _ in lines)
    room = max(20, tables.width_for(out) - width - 2)
    for key, value in lines:
        text = "-" if value is None else report.printable(str(value))
        print(f"{key:<{width}}  {text if len(text) <= room else text[: room - 1] + '…'}", file=out)


def _shape(recorded: Mapping[str, Any] | None) -> str:
    """The recorded shape in one line: the opportunity table and the features on."""
    if not recorded:
        return "- (recorded by the next run)"
    shape = recorded["shape"]
    on = [f for f, v in shape.get("features", {}).items() if v]
    table = shape.get("tables", {}).get("opportunity", {}).get("table", "?")
    return f"{table}; features: {', '.join(on) or 'none'} (`python -m sync source`)"


def preview_sheet(data: Mapping[str, Any], out: TextIO) -> None:
    print(report.printable(f"next page: {data['run']}" + (f", page {data['page']}" if data["page"] else "")), file=out)
    labels = {
        "rows_read": "rows read",
        "would_insert": "would insert",
        "would_update": "would update",
        "unchanged": "unchanged",
        "would_skip": "would skip",
        "would_delete": "would delete",
        "deleted_not_stored": "deleted in the source, never stored",
        "degraded": "degraded (stored; see rejections)",
        "would_hold": "deletes the guard would hold",
        "links_read": "call links read",
    }
    width = max(len(v) for v in labels.values())
    for key, label in labels.items():
        print(f"  {label:<{width}}  {data[key]}", file=out)
    for n, line in enumerate(held_deletes(data.get("held_deletes") or [])):
        print(report.printable(f"  {'deletes held now' if n == 0 else '':<{width}}  {line}"), file=out)
    issues = data["issues"]
    if issues:
        print("rejections:", file=out)
        tables.render(issues[:_PREVIEW_ISSUES], _ISSUE_COLUMNS, out, width=tables.width_for(out))
    if len(issues) > _PREVIEW_ISSUES:
        print(f"… and {len(issues) - _PREVIEW_ISSUES} more (preview --json lists every one)", file=out)


def _cost(run: Mapping[str, Any]) -> str:
    """Jobs and bytes as BigQuery reported them; "unknown" where it did not (the emulator bills nothing)."""
    jobs = run.get("bigquery_jobs")
    processed, billed = run.get("bigquery_bytes_processed"), run.get("bigquery_bytes_billed")
    return f"{'?' if jobs is None else jobs} jobs, {_bytes(processed)} processed, {_bytes(billed)} billed"


def _bytes(value: Any) -> str:
    if value is None:
        return "unknown"
    return f"{int(value) / 1e6:,.1f} MB"


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "-"
    s = int(float(seconds))
    return f"{s // 3600}h {s % 3600 // 60}m {s % 60}s"
