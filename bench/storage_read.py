"""Would ``google-cloud-bigquery-storage`` pay for itself? Its import at cold start against its reads.

Production reads each page from the run's query result with ``jobs.getQueryResults`` (JSON over
REST, converted per column by ``sync/bigquery/cells.py``). The Storage Read API streams Arrow
over gRPC instead. bqemulator serves ``CreateReadSession`` only for catalog tables, not for a query's
anonymous result, so both paths read the same catalog table here: the Fivetran ``opportunity``
table of the seeded dataset (about 500 B of metadata a row), page by page as the sync would.

Cold start is measured in fresh interpreters: ``import main`` alone, and ``import main`` plus
what the Storage path needs (``google.cloud.bigquery_storage_v1`` and ``pyarrow``).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.emulated import seed
from standins import bigquery as sbq

ROOT = Path(__file__).resolve().parent.parent

_IMPORTS = {
    "main": "import main",
    "main + bigquery_storage + pyarrow": "import main, google.cloud.bigquery_storage_v1, pyarrow",
}


def import_seconds(repeats: int) -> dict[str, float]:
    """Median wall time of a fresh interpreter that only imports, per import set."""
    out: dict[str, float] = {}
    for name, statement in _IMPORTS.items():
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", statement], cwd=ROOT, check=True, capture_output=True)
            samples.append(time.perf_counter() - started)
        out[name] = statistics.median(samples)
    return out


def _rest_rows(bq: Any, table: str, page: int, pages: int | None) -> tuple[int, float]:
    """Rows as the sync reads them: JSON pages, converted per column (``sync/bigquery/cells.py``)."""
    from sync.bigquery import cells

    started = time.perf_counter()
    count = 0
    iterator = bq.list_rows(table, page_size=page, max_results=page * pages if pages else None)
    convert = cells.row_converter(iterator.schema)
    assert convert is not None, "the seeded table holds only the types the sync converts itself"
    for p in iterator.pages:
        for raw in p.raw_page.get("rows", ()):
            convert(raw["f"])
            count += 1
    return count, time.perf_counter() - started


def _storage_rows(grpc_port: int, project: str, table: str, pages: int | None, page: int) -> tuple[int, float]:
    """The same rows over the Storage Read API: Arrow record batches, then Python values."""
    import grpc
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.bigquery_storage_v1 import BigQueryReadClient, types
    from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport

    started = time.perf_counter()
    # As the client's own transport does: a read response may exceed gRPC's 4 MB default.
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}", options=[("grpc.max_receive_message_length", -1)])
    client = BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=channel, credentials=AnonymousCredentials()))
    dataset, name = table.split(".")[1:]
    session = client.create_read_session(
        parent=f"projects/{project}",
        read_session=types.ReadSession(
            table=f"projects/{project}/datasets/{dataset}/tables/{name}", data_format=types.DataFormat.ARROW
        ),
        max_stream_count=1,
    )
    count = 0
    limit = page * pages if pages else None
    for stream in session.streams:
        for batch in client.read_rows(stream.name).rows(session).pages:
            for row in batch.to_arrow().to_pylist():
                tuple(row.values())
                count += 1
                if limit and count >= limit:
                    return count, time.perf_counter() - started
    return count, time.perf_counter() - started


def run(rows: int, page: int, repeats: int, log_dir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"rows": rows, "page": page, "imports": import_seconds(repeats)}
    with sbq.running_emulator(log_dir) as emulator:
        bq = sbq.client(emulator.endpoint)
        sf, _gong, results["seed_seconds"] = seed(bq, rows, f"storage_{rows}_{int(time.time())}")
        table = f"{sbq.PROJECT}.{sf}.opportunity"
        for label, pages in (("one_page", 1), ("full", None)):
            rest = [_rest_rows(bq, table, page, pages) for _ in range(repeats)]
            storage = [_storage_rows(emulator.grpc_port, sbq.PROJECT, table, pages, page) for _ in range(repeats)]
            results[label] = {
                "rows": rest[0][0],
                "storage_rows": storage[0][0],
                "rest_seconds": statistics.median(s for _, s in rest),
                "storage_seconds": statistics.median(s for _, s in storage),
            }
    return results
