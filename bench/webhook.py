"""Freshness after a Fivetran sync: a signed ``sync_end`` POST to the changed row in Postgres.

Everything is served as it deploys, on the local stack: the webhook (``main.fivetran_webhook``)
and the sync (``main.sync_opportunities``) each under functions-framework in its own process,
the official Pub/Sub emulator pushing the topic to the sync, the BigQuery emulator as the source,
the signing key in the Secret Manager stand-in. Each sample changes one opportunity in BigQuery
(as a Fivetran sync lands it), then times (after one sample per path, reported apart, that warms
both functions up):

- ``webhook``: from the signed POST to the row showing the change in Postgres;
- ``tick``: from publishing ``{"type":"tick"}`` (what Cloud Scheduler publishes) to the same.

The scheduler path waits for its next tick first: its worst case is the schedule's period plus
the ``tick`` time. Samples alternate between the paths, each from an idle sync (no run in progress).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import emulated
from bench.pg import fresh_database, query
from standins import bigquery as sbq
from standins import fivetran
from standins import pubsub as spubsub
from standins.process import free_port
from sync.bigquery.source import BigQuerySource
from sync.core.config import Settings
from sync.core.messages import Message
from sync.postgres.db import Connection, connect_url
from sync.run.pipeline import Pipeline
from sync.run.publisher import PubSubPublisher

ROOT = Path(__file__).resolve().parent.parent
SCHEDULE_PERIOD_SECONDS = 15 * 60  # terraform's default schedule, */15
KEY = "bench-" + uuid.uuid4().hex


def run(samples: int, rows: int, log_dir: Path) -> dict[str, Any]:
    """``samples`` changes synced through each path; seconds per sample, median and p95."""
    if spubsub.emulator_binary() is None:
        return {"skipped": "the Pub/Sub emulator is not installed"}
    with contextlib.ExitStack() as stack:
        emulator = stack.enter_context(sbq.running_emulator(log_dir))
        bq = sbq.client(emulator.endpoint)
        sf, gong, _ = emulated.seed(bq, rows, f"webhook_{int(time.time())}")
        url = stack.enter_context(fresh_database())
        env = {**emulated.env_for(emulator.endpoint, sf, gong, url, 2000), "SYNC_LOOKBACK_SECONDS": "0"}
        _drain(bq, env)  # the initial load: every later run is a small incremental one
        topic = stack.enter_context(_topic(log_dir))
        keys = fivetran.SigningKeyStore.start(KEY, log_dir)
        stack.callback(keys.stop)
        env = {**env, "SYNC_TOPIC": topic, "PUBSUB_EMULATOR_HOST": os.environ["PUBSUB_EMULATOR_HOST"]}
        sync_port = stack.enter_context(_serve("sync_opportunities", "cloudevent", env, log_dir))
        hook_port = stack.enter_context(_serve("fivetran_webhook", "http", {**env, **keys.env()}, log_dir))
        _push(topic, sync_port)
        target = query_one(url, "SELECT min(gong_opportunity_id) FROM opportunities")
        table = f"`{sbq.PROJECT}`.`{sf}`.`opportunity`"
        publisher = PubSubPublisher(topic)
        triggers = {"webhook": lambda: _post(hook_port), "tick": lambda: publisher.publish(Message.tick())}
        # One sample each first, reported apart: it pays both functions' cold starts.
        cold = {name: _samples(1, bq, table, target, url, trigger)[0][0] for name, trigger in triggers.items()}
        # Alternated, so both paths see the emulator's drift alike.
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in triggers}
        for _ in range(samples):
            for name, trigger in triggers.items():
                results[name] += _samples(1, bq, table, target, url, trigger)
    return {**_summary(results, samples, rows), "first_sample_s": cold}


def query_one(url: str, sql: str) -> Any:
    conn = connect_url(url)
    try:
        return query(conn, sql)[0][0]
    finally:
        conn.close()


def _summary(results: dict[str, list[tuple[float, float]]], samples: int, rows: int) -> dict[str, Any]:
    out: dict[str, Any] = {"samples": samples, "rows_in_source": rows}
    for name, pairs in results.items():
        ordered = sorted(total for total, _ in pairs)
        out[name] = {
            "median_s": statistics.median(ordered),
            "p95_s": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
            "max_s": ordered[-1],
            # The POST until its 200 (the webhook's own work), or the publish until its ack.
            "trigger_median_s": statistics.median(answered for _, answered in pairs),
            "all_s": [round(total, 3) for total, _ in pairs],
        }
    out["scheduler_worst_case_s"] = SCHEDULE_PERIOD_SECONDS + out["tick"]["max_s"]
    return out


def _samples(n: int, bq: Any, table: str, target: str, url: str, trigger: Callable[[], None]) -> list[tuple[float, float]]:
    """(seconds to the row in Postgres, seconds the trigger itself took) per sample."""
    conn = connect_url(url)
    conn.autocommit = True
    try:
        seconds = []
        for _ in range(n):
            name = f"renamed {uuid.uuid4().hex[:8]}"
            sql = f"UPDATE {table} SET name = '{name}', _fivetran_synced = CURRENT_TIMESTAMP() WHERE id = '{target}'"
            bq.query(sql).result(timeout=60)
            started = time.perf_counter()
            trigger()
            answered = time.perf_counter() - started
            _wait(conn, "SELECT name = %s FROM opportunities WHERE gong_opportunity_id = %s", (name, target))
            seconds.append((time.perf_counter() - started, answered))
            # The next sample starts from an idle sync, as a sync_end after a quiet spell does.
            _wait(conn, "SELECT run_id IS NULL AND lease_owner IS NULL FROM sync_status", ())
        return seconds
    finally:
        conn.close()


def _wait(conn: Connection, sql: str, params: tuple[Any, ...], limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    cur = conn.cursor()
    while True:
        cur.execute(sql, params)
        row = cur.fetchone()
        if row is not None and row[0]:
            return
        if time.monotonic() > deadline:
            msg = f"gave up after {limit:.0f} s waiting for: {sql}"
            raise TimeoutError(msg)
        time.sleep(0.01)


def _post(port: int) -> None:
    raw = fivetran.encode(fivetran.event(created=dt.datetime.now(dt.UTC)))
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/",
        data=raw,
        headers={"Content-Type": "application/json", "X-Fivetran-Signature-256": fivetran.signature(KEY, raw)},
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - local
        assert response.status == 200, response.status


def _drain(bq: Any, env: dict[str, str]) -> None:
    settings = Settings.from_env(env)
    pipeline = Pipeline(settings, BigQuerySource(bq, settings), lambda: connect_url(env["DATABASE_URL"]))
    outcome = pipeline.handle(Message.tick())
    while outcome.continuation is not None:
        outcome = pipeline.handle(outcome.continuation)


@contextlib.contextmanager
def _topic(log_dir: Path) -> Iterator[str]:
    emulator = spubsub.start(log_dir)
    os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host
    try:
        from google.cloud import pubsub_v1  # type: ignore[attr-defined]

        topic = pubsub_v1.PublisherClient().topic_path("local-project", "bench-webhook")
        pubsub_v1.PublisherClient().create_topic(name=topic)
        yield topic
    finally:
        os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        emulator.stop()


def _push(topic: str, port: int) -> None:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    subscriber = pubsub_v1.SubscriberClient()
    subscriber.create_subscription(
        name=subscriber.subscription_path("local-project", "bench-webhook-push"),
        topic=topic,
        push_config=pubsub_v1.types.PushConfig(push_endpoint=f"http://127.0.0.1:{port}/"),
    )


@contextlib.contextmanager
def _serve(target: str, signature: str, env: dict[str, str], log_dir: Path) -> Iterator[int]:
    port = free_port()
    log = (log_dir / f"{target}.log").open("ab")
    command = [sys.executable, "-m", "functions_framework", "--target", target, "--signature-type", signature]
    command += ["--source", str(ROOT / "main.py"), "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        process.wait(30)
        log.close()
