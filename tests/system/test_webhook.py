"""``main.fivetran_webhook`` through functions-framework, with its key in the Secret Manager stand-in,
its state in a real Postgres and its ticks on the real Pub/Sub emulator; and end to end: a signed
``sync_end`` -> a tick on the topic -> the sync function served by functions-framework -> the
changed rows in Postgres.

The requests that publish nothing (refusals, ignored events) need no emulator; the rest are
marked ``pubsub`` and skipped, with the reason, where it is not installed.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from serving import Server, wait_until

import main as entry
from standins import fivetran
from standins import pubsub as spubsub
from standins.bigquery import PROJECT
from standins.generator import generate
from sync.core import secrets
from sync.core.messages import Message, decode
from sync.postgres import db

KEY = "whsec-" + uuid.uuid4().hex
ROOT = Path(__file__).resolve().parents[2]

NO_EMULATOR = spubsub.emulator_binary() is None


@pytest.fixture(scope="module")
def key_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fivetran.SigningKeyStore]:
    store = fivetran.SigningKeyStore.start(KEY, tmp_path_factory.mktemp("webhook-key"))
    try:
        yield store
    finally:
        store.stop()


class Hook:
    """A fresh webhook instance (a cold start) with the test's settings, and the topic's ticks."""

    def __init__(self, client: Any, topic: str, subscription: str | None) -> None:
        self.client = client
        self.topic = topic
        self.subscription = subscription

    def post(self, body: bytes | dict[str, Any], *, key: str = KEY, signature: str | None = None, **kw: Any) -> Any:
        raw = fivetran.encode(body) if isinstance(body, dict) else body
        headers = {"X-Fivetran-Signature-256": signature if signature is not None else fivetran.signature(key, raw)}
        return self.client.post("/", data=raw, headers=headers, content_type=kw.pop("content_type", "application/json"), **kw)

    def ticks(self) -> list[Message]:
        """Every message published so far (each pull acknowledges what it took)."""
        from google.cloud import pubsub_v1

        assert self.subscription is not None, "this test runs without the emulator"
        subscriber = pubsub_v1.SubscriberClient()
        response = subscriber.pull(subscription=self.subscription, max_messages=100, timeout=30)
        ids = [m.ack_id for m in response.received_messages]
        if ids:
            subscriber.acknowledge(subscription=self.subscription, ack_ids=ids)
        return [decode(m.message.data) for m in response.received_messages]


def _cold_client(monkeypatch: pytest.MonkeyPatch, env_vars: dict[str, str]) -> Any:
    for key in list(entry.os.environ):
        if key.startswith(("SYNC_", "DB_", "BIGQUERY_", "DATABASE_URL", "INSTANCE_", "CLOUD_SQL_", "SECRET_", "FIVETRAN_")):
            monkeypatch.delenv(key, raising=False)
    for key, value in env_vars.items():
        monkeypatch.setenv(key, value)
    db.close()
    secrets.close()
    for module in {entry, sys.modules.get("main")} - {None}:
        monkeypatch.setattr(module, "_webhook", None)
    return functions_framework.create_app("fivetran_webhook", str(entry.__file__), "http").test_client()


def _hook(env: Any, monkeypatch: pytest.MonkeyPatch, key_store: Any, pubsub_host: str | None, **extra: str) -> Hook:
    topic, subscription = f"projects/{PROJECT}/topics/unused", None
    if pubsub_host is not None:
        from google.cloud import pubsub_v1

        name = f"webhook-{uuid.uuid4().hex[:8]}"
        topic = pubsub_v1.PublisherClient().create_topic(name=f"projects/{PROJECT}/topics/{name}").name
        subscription = f"projects/{PROJECT}/subscriptions/{name}"
        pubsub_v1.SubscriberClient().create_subscription(name=subscription, topic=topic)
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_host)
    env_vars = {**env.env_vars(), **key_store.env(), "SYNC_TOPIC": topic, **extra}
    del env_vars["BIGQUERY_API_ENDPOINT"]  # the webhook never reads BigQuery
    return Hook(_cold_client(monkeypatch, env_vars), topic, subscription)


@pytest.fixture
def offline_hook(env: Any, monkeypatch: pytest.MonkeyPatch, key_store: Any) -> Hook:
    return _hook(env, monkeypatch, key_store, None)


@pytest.fixture
def hook(env: Any, monkeypatch: pytest.MonkeyPatch, key_store: Any, pubsub_host: str) -> Hook:
    return _hook(env, monkeypatch, key_store, pubsub_host)


def _recorded(env: Any) -> list[tuple[Any, ...]]:
    return env.query("SELECT requested_at IS NOT NULL, tick_published_at IS NOT NULL FROM sync_wakeups")


def _flip(raw: bytes, at: int) -> bytes:
    return raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1 :]


def test_refusals(offline_hook: Hook, env: Any, caplog: pytest.LogCaptureFixture) -> None:
    raw = fivetran.encode(fivetran.event())
    good = fivetran.signature(KEY, raw)
    h = offline_hook
    answers = {
        "wrong secret": h.post(raw, key="not-" + KEY),
        "one flipped byte": h.post(_flip(raw, 20), signature=good),
        "sha256= prefix": h.post(raw, signature="sha256=" + good.lower()),
        "header missing": h.client.post("/", data=raw, content_type="application/json"),
        "empty body, unsigned": h.client.post("/", data=b"", content_type="application/json"),
        "empty body, signed": h.post(b""),
        "signed, not an event": h.post(b"[]"),
        "1 MB body": h.post(b"{" + b" " * 1_000_000 + b"}"),
        "GET": h.client.get("/"),
        "PUT": h.client.put("/", data=raw, content_type="application/json"),
        "text/plain": h.post(raw, content_type="text/plain"),
        "form": h.post(raw, content_type="application/x-www-form-urlencoded"),
    }
    statuses = {what: answer.status_code for what, answer in answers.items()}
    assert statuses == {
        "wrong secret": 401,
        "one flipped byte": 401,
        "sha256= prefix": 401,
        "header missing": 401,
        "empty body, unsigned": 401,
        "empty body, signed": 400,
        "signed, not an event": 400,
        "1 MB body": 413,
        "GET": 405,
        "PUT": 405,
        "text/plain": 415,
        "form": 415,
    }
    # No detail: an attacker learns nothing about why a signature failed.
    assert {answers[w].data for w in ("wrong secret", "one flipped byte", "sha256= prefix", "header missing")} == {b""}
    assert _recorded(env) == [(False, False)]  # nothing recorded, nothing published
    assert KEY not in caplog.text


def test_events_that_start_nothing(offline_hook: Hook, env: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sync.webhook")
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    bodies = [
        fivetran.event("test_event"),
        fivetran.event("sync_start"),
        fivetran.event(status="FAILURE_WITH_TASK"),
        # A genuine sync_end captured three hours ago and replayed: signed, but too old.
        fivetran.event(created=old),
    ]
    assert [offline_hook.post(b).status_code for b in bodies] == [200, 200, 200, 200]
    outcomes = [r.outcome for r in caplog.records if getattr(r, "event", None) == "webhook_answered"]
    assert outcomes == ["test_event", "not_sync_end", "sync_not_successful", "too_old"]
    assert _recorded(env) == [(False, False)]


def test_a_bad_configuration_answers_500_naming_the_variable(
    env: Any, monkeypatch: pytest.MonkeyPatch, key_store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    hook = _hook(env, monkeypatch, key_store, None, FIVETRAN_WEBHOOK_CONNECTORS="not an id")
    assert hook.post(fivetran.event()).status_code == 500  # Fivetran retries once it is fixed
    assert "FIVETRAN_WEBHOOK_CONNECTORS must be" in caplog.text


@pytest.mark.pubsub
@pytest.mark.skipif(NO_EMULATOR, reason="Pub/Sub emulator not installed")
@pytest.mark.parametrize("case", ["lower", "upper"])
def test_a_signed_sync_end_publishes_a_tick(hook: Hook, env: Any, case: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    body = fivetran.event(connector_id="unique_marker_conn")
    raw = fivetran.encode(body)
    sig = fivetran.signature(KEY, raw)
    answer = hook.post(raw, signature=sig.lower() if case == "lower" else sig.upper())
    assert answer.status_code == 200
    assert hook.ticks() == [Message.tick()]
    assert _recorded(env) == [(True, True)]
    # Neither the key nor the body reaches a log line (the connector id, a field we log, does).
    assert KEY not in caplog.text
    assert raw.decode() not in caplog.text
    assert body["connector_name"] not in caplog.text


@pytest.mark.pubsub
@pytest.mark.skipif(NO_EMULATOR, reason="Pub/Sub emulator not installed")
def test_a_burst_yields_one_tick(hook: Hook, env: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sync.webhook")
    connectors = ["sf_one", "sf_two", "gong_one", "gong_two", "sf_three"]
    assert [hook.post(fivetran.event(connector_id=c)).status_code for c in connectors] == [200] * 5
    assert hook.ticks() == [Message.tick()]
    outcomes = [r.outcome for r in caplog.records if getattr(r, "event", None) == "webhook_answered"]
    assert outcomes == ["tick_published"] + ["tick_outstanding"] * 4
    # A run begins: the tick is no longer outstanding, and the next sync_end publishes again.
    env.query("UPDATE sync_status SET run_begun_at = now()")
    assert hook.post(fivetran.event()).status_code == 200
    assert hook.ticks() == [Message.tick()]


@pytest.mark.pubsub
@pytest.mark.skipif(NO_EMULATOR, reason="Pub/Sub emulator not installed")
def test_the_allow_list(env: Any, monkeypatch: pytest.MonkeyPatch, key_store: Any, pubsub_host: str) -> None:
    hook = _hook(
        env,
        monkeypatch,
        key_store,
        pubsub_host,
        FIVETRAN_WEBHOOK_CONNECTORS="sf_main,gong_main",
        FIVETRAN_WEBHOOK_GROUPS="warehouse",
    )
    assert hook.post(fivetran.event(connector_id="hubspot", group_id="warehouse")).status_code == 200
    assert hook.post(fivetran.event(connector_id="sf_main", group_id="elsewhere")).status_code == 200
    assert _recorded(env) == [(False, False)]
    assert hook.post(fivetran.event(connector_id="gong_main", group_id="warehouse")).status_code == 200
    assert hook.ticks() == [Message.tick()]


@pytest.mark.pubsub
@pytest.mark.skipif(NO_EMULATOR, reason="Pub/Sub emulator not installed")
def test_signed_sync_end_to_changed_rows_in_postgres(hook: Hook, env: Any, tmp_path: Path) -> None:
    from google.cloud import pubsub_v1

    data = generate(40, seed=83)
    env.seed(data)
    env.drain()  # the scheduler's last run: everything is in Postgres
    target = data.rows("opportunity")[0]["id"]
    renamed = f"Renamed by Fivetran {uuid.uuid4().hex[:6]}"
    # Fivetran lands a change, then sends sync_end.
    env.update("opportunity", "id", target, name=renamed, _fivetran_synced=dt.datetime.now(dt.UTC))
    server = Server(
        {**env.env_vars(), "SYNC_TOPIC": hook.topic, "PUBSUB_EMULATOR_HOST": entry.os.environ["PUBSUB_EMULATOR_HOST"]},
        tmp_path / "sync.log",
    )
    try:
        pubsub_v1.SubscriberClient().create_subscription(
            name=f"{hook.subscription}-push",
            topic=hook.topic,
            push_config=pubsub_v1.types.PushConfig(push_endpoint=f"http://127.0.0.1:{server.port}/"),
        )
        assert hook.post(fivetran.event()).status_code == 200

        def stored() -> bool:
            return env.query("SELECT name FROM opportunities WHERE gong_opportunity_id = %s", (target,)) == [(renamed,)]

        wait_until(stored, 120, "the renamed opportunity in Postgres")
    finally:
        server.stop()
    runs = env.query("SELECT trigger, status FROM sync_runs ORDER BY started_at")
    assert runs == [("tick", "success"), ("tick", "success")]  # the drain, and the run the webhook's tick began


def test_an_unreadable_key_answers_500_naming_the_variable(
    env: Any, monkeypatch: pytest.MonkeyPatch, key_store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    missing = f"{fivetran.WEBHOOK_SECRET}-gone/versions/latest"
    hook = _hook(env, monkeypatch, key_store, None, FIVETRAN_WEBHOOK_SECRET=missing)
    assert hook.post(fivetran.event()).status_code == 500
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1
    assert "Secret Manager answered 404 for FIVETRAN_WEBHOOK_SECRET" in critical[0].getMessage()


def test_postgres_down_answers_503_so_fivetran_retries(
    env: Any, monkeypatch: pytest.MonkeyPatch, key_store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from standins.process import free_port

    down = f"postgresql://nobody@127.0.0.1:{free_port()}/none?connect_timeout=2&sslmode=disable"
    hook = _hook(env, monkeypatch, key_store, None, DATABASE_URL=down)
    assert hook.post(fivetran.event()).status_code == 503
    failed = [r for r in caplog.records if getattr(r, "event", None) == "webhook_failed"]
    assert [r.levelno for r in failed] == [logging.WARNING]
    # A refused signature is still refused without touching the database.
    assert hook.post(fivetran.event(), key="wrong").status_code == 401
