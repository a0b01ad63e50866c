"""The BigQuery emulator (PyPI ``bqemulator``) as a subprocess, and seeding it.

The real ``google-cloud-bigquery`` client talks to it over REST with anonymous credentials.
DuckDB, underneath, would download extensions at start; ``install_duckdb_extensions`` puts
the pinned wheels' copies in place first so nothing is fetched at run time.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from standins.generator import FivetranData, pascal_case
from standins.process import free_port, stop

PROJECT = "local-project"
# Logical generator table -> (dataset setting, table name)
TABLE_HOME = {
    "opportunity": ("salesforce", "opportunity"),
    "account": ("salesforce", "account"),
    "user": ("salesforce", "user"),
    "opportunity_history": ("salesforce", "opportunity_history"),
    "gong_opportunity": ("gong", "opportunity"),
    "call_context_integration": ("gong", "call_context_integration"),
}


def install_duckdb_extensions() -> None:
    """Copy the pinned DuckDB extension wheels into DuckDB's extension directory."""
    import duckdb_extensions

    for name in ("spatial", "avro"):
        duckdb_extensions.import_extension(name)


@dataclass
class Emulator:
    endpoint: str
    process: subprocess.Popen[bytes]
    log_path: Path
    grpc_port: int = 0  # the Storage Read API (bench/storage_read.py)

    def stop(self) -> None:
        stop(self.process)


def start_emulator(log_dir: Path, project: str = PROJECT) -> Emulator:
    """Start ``bqemulator`` on free ports and wait until it answers."""
    install_duckdb_extensions()
    rest, grpc = free_port(), free_port()
    log_path = log_dir / f"bqemulator-{rest}.log"
    exe = shutil.which("bqemulator", path=os.path.dirname(sys.executable)) or "bqemulator"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [
                exe,
                "start",
                "--rest-port",
                str(rest),
                "--grpc-port",
                str(grpc),
                "--project",
                project,
                "--log-level",
                "warning",
                "--log-format",
                "json",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{rest}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"bqemulator exited with {proc.returncode}; see {log_path}"
            raise RuntimeError(msg)
        try:
            with urllib.request.urlopen(f"{endpoint}/bigquery/v2/projects/{project}/datasets", timeout=2):  # noqa: S310
                return Emulator(endpoint, proc, log_path, grpc)
        except OSError:
            time.sleep(0.3)
    proc.kill()
    msg = f"bqemulator did not answer within 60 s; see {log_path}"
    raise RuntimeError(msg)


@contextmanager
def running_emulator(log_dir: Path) -> Iterator[Emulator]:
    emulator = start_emulator(log_dir)
    try:
        yield emulator
    finally:
        emulator.stop()


def client(endpoint: str, project: str = PROJECT) -> Any:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    return bigquery.Client(
        project=project, credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=endpoint)
    )


def seed(
    bq: Any,
    data: FivetranData,
    *,
    salesforce_dataset: str,
    gong_dataset: str,
    spelling: str = "snake",
    skip_tables: Iterable[str] = (),
    project: str = PROJECT,
) -> None:
    """(Re)create the datasets and load every table of ``data``."""
    from google.cloud import bigquery

    datasets = {"salesforce": salesforce_dataset, "gong": gong_dataset}
    for name in datasets.values():
        bq.delete_dataset(f"{project}.{name}", delete_contents=True, not_found_ok=True)
        bq.create_dataset(f"{project}.{name}")
    skip = set(skip_tables)
    for logical, (home, table_name) in TABLE_HOME.items():
        if logical in skip:
            continue
        rename = pascal_case if spelling == "pascal" else (lambda c: c)
        schema = [bigquery.SchemaField(rename(col), typ) for col, typ in data.schemas[logical].items()]
        table_id = f"{project}.{datasets[home]}.{table_name}"
        bq.create_table(bigquery.Table(table_id, schema=schema))
        rows = [{rename(k): v for k, v in row.items() if k in data.schemas[logical]} for row in data.rows(logical)]
        load_rows(bq, table_id, rows)


def load_rows(bq: Any, table_id: str, rows: list[dict[str, Any]], chunk: int = 20_000) -> None:
    """Append rows with a newline-delimited JSON load job (``load_table_from_json`` fails on the emulator)."""
    from google.cloud import bigquery

    config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON, write_disposition="WRITE_APPEND")
    for start in range(0, len(rows), chunk):
        body = "\n".join(json.dumps(r, default=str) for r in rows[start : start + chunk]).encode("utf-8")
        job = bq.load_table_from_file(io.BytesIO(body), table_id, job_config=config, rewind=True)
        job.result(timeout=120)
