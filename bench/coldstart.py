"""Cold start: a fresh interpreter importing ``main`` and handling its first Pub/Sub message.

Each sample is a new subprocess, as a new Cloud Functions instance is. The message goes through
functions-framework's own test client, so decoding and the CloudEvent conversion are included.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

_BARE = "import time; t = time.perf_counter(); import functions_framework; print(time.perf_counter() - t)"

_FIRST_MESSAGE = r"""
import base64, json, time
t0 = time.perf_counter()
import functions_framework
import main
t_import = time.perf_counter()
client = functions_framework.create_app("sync_opportunities", "main.py", "cloudevent").test_client()
body = {"message": {"data": base64.b64encode(b'{"type":"tick"}').decode(), "messageId": "1"},
        "subscription": "projects/p/subscriptions/s"}
headers = {"ce-specversion": "1.0", "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
           "ce-source": "//pubsub.googleapis.com/projects/p/topics/t", "ce-id": "1"}
resp = client.post("/", json=body, headers=headers)
t_done = time.perf_counter()
print(json.dumps({"status": resp.status_code, "import_main": t_import - t0, "first_message": t_done - t0}))
"""


def _python() -> str:
    return sys.executable


def bare_import() -> float:
    out = subprocess.run([_python(), "-c", _BARE], capture_output=True, text=True, check=True, cwd=ROOT)
    return float(out.stdout.strip().splitlines()[-1])


def first_message(env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [_python(), "-c", _FIRST_MESSAGE],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, **env},
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def heavy_imports(limit: int = 12) -> list[tuple[str, float]]:
    """Top-level packages that ``import main`` pulls in, by cumulative import seconds.

    From ``python -X importtime``; a package's cost is its outermost (largest cumulative) import.
    """
    out = subprocess.run(
        [_python(), "-X", "importtime", "-c", "import main"], capture_output=True, text=True, check=True, cwd=ROOT
    )
    cost: dict[str, float] = {}
    for line in out.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)", line)
        if not m or m.group(3) == "main":
            continue
        package = m.group(3).split(".")[0]
        cost[package] = max(cost.get(package, 0.0), int(m.group(2)) / 1e6)
    return sorted(cost.items(), key=lambda kv: -kv[1])[:limit]


def loaded_modules() -> dict[str, bool]:
    """Which heavy libraries are in sys.modules right after ``import main``."""
    probe = (
        "import sys, json, main; names = ['google.cloud.bigquery', 'google.cloud.pubsub_v1', 'google.cloud.sql.connector',"
        " 'google.cloud.secretmanager', 'grpc', 'pg8000', 'flask', 'cloudevents', 'numpy', 'pandas', 'pyarrow', 'requests'];"
        " print(json.dumps({n: n in sys.modules for n in names}))"
    )
    out = subprocess.run([_python(), "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded: dict[str, bool] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def run(env: dict[str, str], repeats: int) -> dict[str, Any]:
    bare, imports, firsts, statuses = [], [], [], []
    for _ in range(repeats):
        bare.append(bare_import())
        started = time.perf_counter()
        result = first_message(env)
        imports.append(result["import_main"])
        firsts.append(result["first_message"])
        statuses.append(result["status"])
        _ = time.perf_counter() - started
    return {
        "samples": {"bare_import_functions_framework": bare, "import_main": imports, "first_message": firsts},
        "http_status": statuses,
        "heavy_imports": heavy_imports(),
        "loaded_after_import_main": loaded_modules(),
    }
