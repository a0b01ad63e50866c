"""Dead letters through the official Pub/Sub emulator: the same push subscription shape Terraform
creates (pubsub.tf), pushing to the function served by functions-framework as an HTTP function (a
2nd-gen function without an event trigger), and ``python -m sync dead-letters`` as operators run it.

The emulator honours dead-letter policies: after ``max_delivery_attempts`` failed pushes it moves
the message to the dead-letter topic with the ``CloudPubSubDeadLetterSource*`` attributes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from standins import pubsub as spubsub
from standins.bigquery import PROJECT
from standins.generator import generate
from standins.process import free_port
from sync.core.messages import Message
from sync.ops import deadletters
from sync.run.publisher import PubSubPublisher

ROOT = Path(__file__).resolve().parents[2]
MAX_ATTEMPTS = 5  # the smallest Pub/Sub allows, to keep the test short

needs_emulator = pytest.mark.skipif(
    spubsub.emulator_binary() is None,
    reason="Pub/Sub emulator not installed (Debian package google-cloud-cli-pubsub-emulator)",
)


def _clients():
    from google.cloud import pubsub_v1

    return pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()


def _topics(prefix):
    """Trigger topic, dead-letter topic and its pull subscription, named as Terraform names them."""
    publisher, subscriber = _clients()
    trigger = publisher.create_topic(name=publisher.topic_path(PROJECT, prefix)).name
    dead = publisher.create_topic(name=publisher.topic_path(PROJECT, f"{prefix}-dead-letter")).name
    inspect = subscriber.create_subscription(
        name=subscriber.subscription_path(PROJECT, f"{prefix}-dead-letter-inspect"), topic=dead
    ).name
    return trigger, dead, inspect


def _cli(args, **env_vars):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SYNC_", "DB_", "BIGQUERY_", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "-m", "sync", "dead-letters", *args],
        cwd=ROOT,
        env={**clean, **env_vars},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _serve(port, env_vars, log_path):
    """functions-framework as Cloud Functions runs a function deployed without an event trigger."""
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
    command = [sys.executable, "-m", "functions_framework", "--target", "sync_opportunities", "--signature-type", "http"]
    server = subprocess.Popen(
        [*command, "--source", str(ROOT / "main.py"), "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, **env_vars},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
        except urllib.error.HTTPError:
            return server, log  # it answers (a GET is not a valid push)
        except OSError:
            assert time.monotonic() < deadline, "functions-framework did not start"
            time.sleep(0.3)


def _stop(server, log):
    server.terminate()
    server.wait(10)
    log.close()


def _wait_for_dead_letters(subscription, count, timeout=120):
    _, subscriber = _clients()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        letters = deadletters.pull_all(subscriber, subscription, 100)
        deadletters.release(subscriber, subscription, letters)
        if len(letters) >= count:
            return letters
        time.sleep(1)
    pytest.fail(f"fewer than {count} dead letter(s) after {timeout} s")
    return []


@pytest.mark.pubsub
@needs_emulator
def test_a_message_that_always_fails_is_dead_lettered_and_replay_brings_it_back(env, pubsub_host, tmp_path):
    from google.cloud import pubsub_v1
    from google.protobuf import duration_pb2

    env.seed(generate(30, seed=71))
    trigger, dead, inspect = _topics("dlq-e2e")
    port = free_port()
    broken_db = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"  # nothing listens: retryable, HTTP 503
    function_env = {**env.env_vars(), "SYNC_TOPIC": trigger, "PUBSUB_EMULATOR_HOST": pubsub_host}
    log_path = tmp_path / "function.log"
    server, log = _serve(port, {**function_env, "DATABASE_URL": broken_db}, log_path)
    try:
        _, subscriber = _clients()
        # The shape of google_pubsub_subscription.push (OIDC is accepted, not enforced, by the emulator).
        subscriber.create_subscription(
            request={
                "name": subscriber.subscription_path(PROJECT, "dlq-e2e-push"),
                "topic": trigger,
                "push_config": pubsub_v1.types.PushConfig(
                    push_endpoint=f"http://127.0.0.1:{port}/",
                    oidc_token={"service_account_email": f"invoker@{PROJECT}.iam.gserviceaccount.com"},
                ),
                "ack_deadline_seconds": 60,
                "retry_policy": {
                    "minimum_backoff": duration_pb2.Duration(seconds=1),
                    "maximum_backoff": duration_pb2.Duration(seconds=2),
                },
                "dead_letter_policy": {"dead_letter_topic": dead, "max_delivery_attempts": MAX_ATTEMPTS},
            }
        )
        PubSubPublisher(trigger).publish(Message.tick())

        (letter,) = _wait_for_dead_letters(inspect, 1)
        assert json.loads(letter.data) == {"type": "tick"}
        assert letter.delivery_attempts == str(MAX_ATTEMPTS)
        _stop(server, log)
        attempts = [json.loads(line) for line in log_path.read_text().splitlines() if '"page_failed"' in line]
        assert len(attempts) == MAX_ATTEMPTS, "one retryable failure per delivery, then no more"
        assert all(a["retryable"] is True for a in attempts)
        assert env.query("SELECT count(*) FROM sync_runs") == [(0,)]

        # Listing shows it and leaves it there.
        for _ in range(2):
            listed = _cli([], SYNC_DEAD_LETTER_SUBSCRIPTION=inspect, PUBSUB_EMULATOR_HOST=pubsub_host)
            assert listed.returncode == 0, listed.stderr
            assert letter.message_id in listed.stdout
            assert '"{\\"type\\":\\"tick\\"}"' in listed.stdout
            assert f"  {MAX_ATTEMPTS}  " in listed.stdout
            assert "1 message(s)" in listed.stdout

        # The cause is fixed (the database is back); replay, and the tick runs.
        server, log = _serve(port, function_env, log_path)
        replayed = _cli(["--replay"], SYNC_DEAD_LETTER_SUBSCRIPTION=inspect, SYNC_TOPIC=trigger, PUBSUB_EMULATOR_HOST=pubsub_host)
        assert replayed.returncode == 0, replayed.stderr
        assert replayed.stdout.strip() == f"replayed 1 message(s) to {trigger}"
        deadline = time.monotonic() + 120
        while env.query("SELECT status FROM sync_runs") != [("success",)]:
            assert time.monotonic() < deadline, "the replayed tick never ran"
            time.sleep(1)
        assert env.query("SELECT count(*) FROM opportunities")[0][0] > 0
        empty = _cli([], SYNC_DEAD_LETTER_SUBSCRIPTION=inspect, PUBSUB_EMULATOR_HOST=pubsub_host)
        assert empty.stdout.strip() == "no dead letters"
    finally:
        if server.poll() is None:
            _stop(server, log)


@pytest.mark.pubsub
@needs_emulator
def test_list_limit_json_and_replay_of_letters_published_straight_to_the_topic(pubsub_host):
    publisher, subscriber = _clients()
    trigger, dead, inspect = _topics("dlq-direct")
    replay_sub = subscriber.create_subscription(name=subscriber.subscription_path(PROJECT, "dlq-direct-sub"), topic=trigger).name
    bodies = [b'{"type":"tick"}', b'{"type":"full_resync"}', b"\x1b[31mnot json\x07"]
    for body in bodies:
        publisher.publish(dead, body, origin="opportunity-sync", CloudPubSubDeadLetterSourceDeliveryCount="10").result()
    pubsub_env = {"SYNC_DEAD_LETTER_SUBSCRIPTION": inspect, "PUBSUB_EMULATOR_HOST": pubsub_host}

    listed = _cli(["--json"], **pubsub_env)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert sorted(r["body"].encode() for r in rows) == sorted(bodies)
    assert {r["delivery_attempts"] for r in rows} == {"10"}
    # Pub/Sub's own dead-letter attributes are shown as fields, not as the message's attributes.
    assert all(r["attributes"] == {"origin": "opportunity-sync"} for r in rows)

    table = _cli([], **pubsub_env)
    assert "\x1b" not in table.stdout, "control characters in a body must be escaped"
    assert "\\u001b[31mnot json\\u0007" in table.stdout
    assert len(json.loads(_cli(["--json", "--limit", "2"], **pubsub_env).stdout)) == 2

    replayed = _cli(["--replay", "--json"], **pubsub_env, SYNC_TOPIC=trigger)
    assert replayed.returncode == 0, replayed.stderr
    assert len(json.loads(replayed.stdout)["replayed"]) == 3
    received = deadletters.pull_all(subscriber, replay_sub, 10)
    assert sorted(r.data for r in received) == sorted(bodies)
    for message in received:
        assert message.attributes["origin"] == "opportunity-sync"
        assert "CloudPubSubDeadLetterSourceDeliveryCount" not in message.attributes
        assert message.attributes["replayed_from_dead_letter"] in {r["message_id"] for r in rows}
    assert _cli([], **pubsub_env).stdout.strip() == "no dead letters"


@pytest.mark.parametrize(
    ("args", "env_vars", "expected"),
    [
        # The subscription is required and named in the message.
        ([], {}, "SYNC_DEAD_LETTER_SUBSCRIPTION is required"),
        # A malformed subscription is echoed back with the expected shape.
        (
            [],
            {"SYNC_DEAD_LETTER_SUBSCRIPTION": "dead-letters"},
            "must be projects/PROJECT/subscriptions/NAME, got 'dead-letters'",
        ),
        # Replay needs somewhere to publish.
        (["--replay"], {"SYNC_DEAD_LETTER_SUBSCRIPTION": "projects/p/subscriptions/dlq"}, "SYNC_TOPIC is required for --replay"),
    ],
)
def test_bad_configuration_exits_2_naming_the_variable(args, env_vars, expected):
    result = _cli(args, **env_vars)
    assert result.returncode == 2
    assert result.stdout == ""
    assert expected in result.stderr


def _published_straight(dead, bodies):
    """Letters as the dead-letter policy leaves them, published straight to the dead-letter topic."""
    publisher, _ = _clients()
    return [publisher.publish(dead, body, CloudPubSubDeadLetterSourceDeliveryCount="5").result() for body in bodies]


@pytest.mark.pubsub
@needs_emulator
def test_selection_and_dry_run_touch_only_what_they_pick(pubsub_host):
    import uuid

    _, subscriber = _clients()
    trigger, dead, inspect = _topics("dlq-select")
    replay_sub = subscriber.create_subscription(name=subscriber.subscription_path(PROJECT, "dlq-select-sub"), topic=trigger).name
    continuation = Message.continuation(uuid.uuid4(), 2, None)
    from sync.core.messages import encode

    bodies = {"tick": b'{"type":"tick"}', "full_resync": b'{"type":"full_resync"}', "continue": encode(continuation)}
    bodies["invalid"] = b"not json"
    ids = dict(zip(bodies, _published_straight(dead, bodies.values()), strict=True))
    pubsub_env = {"SYNC_DEAD_LETTER_SUBSCRIPTION": inspect, "PUBSUB_EMULATOR_HOST": pubsub_host}

    def listed(*args):
        result = _cli([*args, "--json"], **pubsub_env, SYNC_TOPIC=trigger)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    assert {r["message_id"]: r["type"] for r in listed()} == {v: k for k, v in ids.items()}
    assert [r["message_id"] for r in listed("--type", "continue")] == [ids["continue"]]
    assert sorted(r["type"] for r in listed("--type", "tick", "--type", "invalid")) == ["invalid", "tick"]
    assert [r["type"] for r in listed("--id", ids["full_resync"])] == ["full_resync"]
    assert listed("--older-than", "1h") == []  # published just now
    assert len(listed("--newer-than", "1h")) == 4

    dry = listed("--replay", "--dry-run", "--type", "tick")
    assert dry["topic"] == trigger
    assert [r["message_id"] for r in dry["would_replay"]] == [ids["tick"]]
    human = _cli(["--replay", "--dry-run"], **pubsub_env, SYNC_TOPIC=trigger)
    assert "dry run: would replay 4 message(s)" in human.stdout
    assert deadletters.pull_all(subscriber, replay_sub, 10) == [], "a dry run publishes nothing"
    assert len(listed()) == 4, "and acknowledges nothing"

    replayed = _cli(["--replay", "--id", ids["full_resync"]], **pubsub_env, SYNC_TOPIC=trigger)
    assert replayed.stdout.strip() == f"replayed 1 message(s) to {trigger}"
    (received,) = deadletters.pull_all(subscriber, replay_sub, 10)
    assert received.data == bodies["full_resync"]
    assert received.attributes["replayed_from_dead_letter"] == ids["full_resync"]
    assert sorted(r["type"] for r in listed()) == ["continue", "invalid", "tick"], "the others stay"

    missing = _cli(["--id", "no-such-id"], **pubsub_env)
    assert missing.returncode == 0
    assert "no dead letters" in missing.stdout
    assert "not among the 3 message(s) pulled: no-such-id" in missing.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--dry-run"], "--dry-run goes with --replay"),  # listing changes nothing already
        (["--older-than", "2 hours"], "an age is a whole number with s, m, h or d"),
        (["--type", "resync"], "invalid choice: 'resync'"),
        # --limit 0 replayed one message (the pull asked for at least one); it is refused, as any count below 1
        (["--replay", "--limit", "0"], "argument --limit: must be a whole number of at least 1, got '0'"),
        (["--limit", "-5"], "argument --limit: must be a whole number of at least 1, got '-5'"),
        (["--older-than", "\u0663h"], "an age is a whole number with s, m, h or d"),  # ASCII digits only
    ],
)
def test_bad_selection_exits_2(args, expected):
    result = _cli(args, SYNC_DEAD_LETTER_SUBSCRIPTION="projects/p/subscriptions/dlq")
    assert result.returncode == 2
    assert expected in result.stderr


@pytest.mark.pubsub
@needs_emulator
def test_replaying_continuations_of_applied_pages_changes_nothing(env, pubsub_host, tmp_path):
    """Pages committed, then their continuations dead-lettered anyway (an ack lost, say): a replay is dropped."""
    from google.cloud import pubsub_v1

    env.seed(generate(120, seed=72))
    trigger, dead, inspect = _topics("dlq-applied")
    _, subscriber = _clients()
    tap = subscriber.create_subscription(name=subscriber.subscription_path(PROJECT, "dlq-applied-tap"), topic=trigger).name
    port = free_port()
    function_env = {**env.env_vars(), "SYNC_TOPIC": trigger, "PUBSUB_EMULATOR_HOST": pubsub_host, "SYNC_PAGE_SIZE": "50"}
    log_path = tmp_path / "function.log"
    server, log = _serve(port, function_env, log_path)
    try:
        subscriber.create_subscription(
            request={
                "name": subscriber.subscription_path(PROJECT, "dlq-applied-push"),
                "topic": trigger,
                "push_config": pubsub_v1.types.PushConfig(push_endpoint=f"http://127.0.0.1:{port}/"),
                "ack_deadline_seconds": 60,
                "dead_letter_policy": {"dead_letter_topic": dead, "max_delivery_attempts": MAX_ATTEMPTS},
            }
        )
        PubSubPublisher(trigger).publish(Message.tick())
        deadline = time.monotonic() + 120
        while env.query("SELECT status, pages FROM sync_runs") != [("success", 3)]:
            assert time.monotonic() < deadline, "the run did not finish through Pub/Sub"
            time.sleep(0.5)
        before = (env.snapshot(), env.query("SELECT * FROM sync_runs"), env.query("SELECT * FROM sync_status"))

        # The continuations the function really published, put back as dead letters.
        published = deadletters.pull_all(subscriber, tap, 10)
        continuations = [d.data for d in published if json.loads(d.data)["type"] == "continue"]
        assert [json.loads(c)["page"] for c in sorted(continuations)] == [2, 3]
        _published_straight(dead, continuations)

        replay_env = {"SYNC_DEAD_LETTER_SUBSCRIPTION": inspect, "SYNC_TOPIC": trigger, "PUBSUB_EMULATOR_HOST": pubsub_host}
        replayed = _cli(["--replay", "--type", "continue"], **replay_env)
        assert replayed.stdout.strip() == f"replayed 2 message(s) to {trigger}", replayed.stderr
        deadline = time.monotonic() + 60
        while log_path.read_text().count('"message_dropped"') < 2:
            assert time.monotonic() < deadline, "the replayed continuations never reached the function"
            time.sleep(0.5)
        dropped = [json.loads(line) for line in log_path.read_text().splitlines() if '"message_dropped"' in line]
        assert all("stale continuation" in d["message"] for d in dropped)
        after = (env.snapshot(), env.query("SELECT * FROM sync_runs"), env.query("SELECT * FROM sync_status"))
        assert after == before, "no page applied twice: rows, run counts and cursor are as they were"
    finally:
        if server.poll() is None:
            _stop(server, log)


def _function_log(log_path, event):
    return [json.loads(line) for line in log_path.read_text().splitlines() if f'"event": "{event}"' in line]


@pytest.mark.pubsub
@needs_emulator
def test_a_replayed_full_resync_that_had_started_starts_no_second_one(env, pubsub_host, tmp_path):
    """The dead letter has a new message id, and the replay another: what the function recognises is when
    the request was first published, which Pub/Sub records on the letter and the replay carries on."""
    from google.cloud import pubsub_v1

    env.seed(generate(40, seed=73))
    trigger, dead, inspect = _topics("dlq-resync")
    publisher, subscriber = _clients()
    port = free_port()
    log_path = tmp_path / "function.log"
    server, log = _serve(port, {**env.env_vars(), "SYNC_TOPIC": trigger, "PUBSUB_EMULATOR_HOST": pubsub_host}, log_path)
    try:
        subscriber.create_subscription(
            request={
                "name": subscriber.subscription_path(PROJECT, "dlq-resync-push"),
                "topic": trigger,
                "push_config": pubsub_v1.types.PushConfig(push_endpoint=f"http://127.0.0.1:{port}/"),
                "ack_deadline_seconds": 60,
                "dead_letter_policy": {"dead_letter_topic": dead, "max_delivery_attempts": MAX_ATTEMPTS},
            }
        )
        (requested,) = env.query("SELECT now()")[0]
        env.drain(Message.full_resync("original"))  # the request's resync ran, under the original id
        pubsub_env = {"SYNC_DEAD_LETTER_SUBSCRIPTION": inspect, "PUBSUB_EMULATOR_HOST": pubsub_host, "SYNC_TOPIC": trigger}

        # The letter as Pub/Sub leaves it: a new id, the source topic's publish time among its attributes.
        source_time = requested.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        publisher.publish(
            dead,
            b'{"type":"full_resync"}',
            CloudPubSubDeadLetterSourceTopicPublishTime=source_time,
            CloudPubSubDeadLetterSourceDeliveryCount=str(MAX_ATTEMPTS),
        ).result()
        assert _cli(["--replay"], **pubsub_env).stdout.strip() == f"replayed 1 message(s) to {trigger}"
        deadline = time.monotonic() + 60
        while not _function_log(log_path, "message_dropped"):
            assert time.monotonic() < deadline, "the replayed full_resync never arrived"
            time.sleep(0.5)
        (dropped,) = _function_log(log_path, "message_dropped")
        assert "a full resync started after this full_resync was requested" in dropped["message"]
        assert env.query("SELECT count(*) FROM sync_runs WHERE trigger = 'full_resync'") == [(1,)]

        # A request first published after that resync started is a new one: its replay runs.
        (later,) = env.query("SELECT now()")[0]
        publisher.publish(dead, b'{"type":"full_resync"}', CloudPubSubDeadLetterSourceTopicPublishTime=later.isoformat()).result()
        assert _cli(["--replay"], **pubsub_env).returncode == 0
        deadline = time.monotonic() + 60
        while env.query("SELECT count(*) FROM sync_runs WHERE trigger = 'full_resync' AND status = 'success'") != [(2,)]:
            assert time.monotonic() < deadline, "the later request's replay did not run"
            time.sleep(0.5)
    finally:
        _stop(server, log)
