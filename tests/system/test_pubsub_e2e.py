"""The real Pub/Sub emulator pushing to the function served by functions-framework.

Skipped, with the reason, where the emulator binary is not installed; the continuation
logic is still covered there by the in-process drain loop (test_faults, test_incremental).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from projection import expected_projection
from serving import Server, wait_until

from standins import pubsub as spubsub
from standins.bigquery import PROJECT
from standins.generator import generate
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
    server = Server(
        env.env_vars(
            SYNC_TOPIC=topic,
            SYNC_PAGE_SIZE="40",  # several pages: continuations must really flow through Pub/Sub
            PUBSUB_EMULATOR_HOST=pubsub_host,
        ),
        tmp_path / "function.log",
    )
    try:
        subscriber = pubsub_v1.SubscriberClient()
        subscriber.create_subscription(
            name=subscriber.subscription_path(PROJECT, "sync-e2e-push"),
            topic=topic,
            push_config=pubsub_v1.types.PushConfig(push_endpoint=f"http://127.0.0.1:{server.port}/"),
        )
        PubSubPublisher(topic).publish(Message.tick())

        wait_until(lambda: env.query("SELECT status, run_id FROM sync_status")[0] == ("success", None), 180, "the run to end", 1)
        assert env.query("SELECT pages, status FROM sync_runs") == [(4, "success")]  # 40 + 40 + 40 + 10: the short page ends it
        assert env.projection() == expected_projection(data)
    finally:
        server.stop()


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
