"""The real Pub/Sub emulator pushing to the function served by functions-framework.

Skipped, with the reason, where the emulator binary is not installed; the continuation
logic is still covered there by the in-process drain loop (test_faults, test_incremental).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from projection import expected_projection

from standins import pubsub as spubsub
from standins.bigquery import PROJECT
from standins.generator import generate
from standins.process import free_port
from sync.core.messages import Message, decode
from sync.run.publisher import PubSubPublisher

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.pubsub,
    pytest.mark.skipif(
        spubsub.emulator_binary() is None,
        reason="Pub/Sub emulator not installed (Debian package google-cloud-cli-pubsub-emulator); "
        "continuations are covered by the in-process drain tests",
    ),
]


def _topic(name):
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    path = publisher.topic_path(PROJECT, name)
    publisher.create_topic(name=path)
    return path


def test_real_publisher_round_trip(pubsub_host):
    from google.cloud import pubsub_v1

    topic = _topic("roundtrip")
    subscriber = pubsub_v1.SubscriberClient()
    sub = subscriber.subscription_path(PROJECT, "roundtrip-sub")
    subscriber.create_subscription(name=sub, topic=topic)
    sent = Message.continuation(__import__("uuid").uuid4(), 2, None)
    PubSubPublisher(topic).publish(sent)
    response = subscriber.pull(subscription=sub, max_messages=1, timeout=30)
    assert decode(response.received_messages[0].message.data) == sent


def test_tick_drains_through_push_continuations(env, pubsub_host, tmp_path):
    from google.cloud import pubsub_v1

    data = generate(130, seed=61)
    env.seed(data)
    topic = _topic("sync-e2e")
    port = free_port()
    server_env = {
        **os.environ,
        **env.env_vars(),
        "SYNC_TOPIC": topic,
        "SYNC_PAGE_SIZE": "40",  # several pages: continuations must really flow through Pub/Sub
        "PUBSUB_EMULATOR_HOST": pubsub_host,
    }
    log = open(tmp_path / "function.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "functions_framework",
            "--target",
            "sync_opportunities",
            "--signature-type",
            "cloudevent",
            "--source",
            str(ROOT / "main.py"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=server_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            except urllib.error.HTTPError:
                break  # the server answers (405/400 for a GET is fine)
            except OSError:
                assert time.monotonic() < deadline, "functions-framework did not start"
                time.sleep(0.3)
        subscriber = pubsub_v1.SubscriberClient()
        subscriber.create_subscription(
            name=subscriber.subscription_path(PROJECT, "sync-e2e-push"),
            topic=topic,
            push_config=pubsub_v1.types.PushConfig(push_endpoint=f"http://127.0.0.1:{port}/"),
        )
        PubSubPublisher(topic).publish(Message.tick())

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            status = env.query("SELECT status, run_id FROM sync_status")[0]
            if status == ("success", None):
                break
            time.sleep(1)
        pages = env.query("SELECT pages, status FROM sync_runs")
        assert pages == [(4, "success")]  # 40 + 40 + 40 + 10: the short fourth page ends the run
        assert env.projection() == expected_projection(data)
    finally:
        server.terminate()
        server.wait(10)
        log.close()


def test_cli_publishes_full_resync(env, pubsub_host):
    from google.cloud import pubsub_v1

    topic = _topic("cli-publish")
    subscriber = pubsub_v1.SubscriberClient()
    sub = subscriber.subscription_path(PROJECT, "cli-publish-sub")
    subscriber.create_subscription(name=sub, topic=topic)
    result = subprocess.run(
        [sys.executable, "-m", "sync", "publish", "full-resync"],
        cwd=ROOT,
        env={**os.environ, **env.env_vars(), "SYNC_TOPIC": topic},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    response = subscriber.pull(subscription=sub, max_messages=1, timeout=30)
    assert decode(response.received_messages[0].message.data) == Message.full_resync()
