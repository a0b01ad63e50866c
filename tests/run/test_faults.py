"""Every fault Pub/Sub and the runtime can produce, injected for real; the table must converge.

After each scenario the live table equals the source's projection row for row and
``sync_status`` says ``success`` with a watermark equal to the source's newest stamp.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from projection import expected_projection

from standins.generator import generate
from standins.postgres import Cluster
from sync.core.errors import LeaseBusyError, RetryableError, StaleLeaseError
from sync.core.messages import Message, encode

ROOT = Path(__file__).resolve().parents[2]


def _assert_converged(env, data) -> None:
    assert env.projection() == expected_projection(data)
    status, watermark, run_id, lease = env.query("SELECT status, last_sync_timestamp, run_id, lease_owner FROM sync_status")[0]
    assert (status, run_id, lease) == ("success", None, None)
    assert watermark == max(dt.datetime.fromisoformat(o["_fivetran_synced"]) for o in data.rows("opportunity"))


def _seeded(env, n=120, seed=21):
    data = generate(n, seed=seed)
    env.seed(data)
    return data


class Injected(Exception):
    pass


def test_every_message_delivered_twice(env):
    data = _seeded(env)
    publisher_log: list[Message] = []

    class Recorder:
        def publish(self, message: Message) -> None:
            publisher_log.append(message)

    pipeline = env.pipeline(Recorder(), SYNC_PAGE_SIZE="40")
    pending = [Message.tick(), Message.tick()]
    outcomes = []
    while pending:
        outcome = pipeline.handle(pending.pop(0))
        outcomes.append(outcome)
        if outcome.continuation is not None:
            pending += [outcome.continuation, outcome.continuation]  # at-least-once: every one twice
    pages = [(o.run_id, o.page) for o in outcomes if o.action == "page"]
    assert len(pages) == len(set(pages))  # no page was applied twice
    assert len(publisher_log) >= 3  # the scenario really chained
    # Each published continuation was delivered twice and at most one copy did work.
    assert sum(o.action == "dropped" for o in outcomes) >= len(publisher_log)
    _assert_converged(env, data)


def test_duplicate_full_resync_message_is_started_once(env):
    data = _seeded(env, n=40)
    env.drain()
    pipeline = env.pipeline()
    first = pipeline.handle(Message.full_resync("msg-42"))
    again = pipeline.handle(Message.full_resync("msg-42"))
    assert first.action == "page"
    assert again.action == "dropped"
    _assert_converged(env, data)


def test_two_invocations_at_once_only_one_writes(env):
    data = _seeded(env)
    gate, release = threading.Event(), threading.Event()

    def hold_after_lease(step):
        if step == "leased":
            gate.set()
            release.wait(30)

    slow = env.pipeline(checkpoint=hold_after_lease, SYNC_PAGE_SIZE="1000")
    results = {}
    worker = threading.Thread(target=lambda: results.setdefault("slow", slow.handle(Message.tick())))
    worker.start()
    assert gate.wait(30)
    other = env.pipeline(SYNC_PAGE_SIZE="1000")
    busy_tick = other.handle(Message.tick())
    with pytest.raises(LeaseBusyError):
        other.handle(Message.full_resync("resync-during-run"))  # must not be lost: redelivered later
    release.set()
    worker.join(60)
    assert busy_tick.action == "busy"
    assert results["slow"].action == "page"
    _assert_converged(env, data)


@pytest.mark.parametrize("step", ["leased", "read", "written", "committed"])
def test_exception_between_steps_then_redelivery_converges(env, step):
    data = _seeded(env)

    def explode(reached):
        if reached == step:
            raise Injected(step)

    crashing = env.pipeline(checkpoint=explode, SYNC_PAGE_SIZE="50")
    message = Message.tick()
    with pytest.raises(RetryableError):  # unknown errors are retried, never acked
        crashing.handle(message)
    assert env.query("SELECT lease_owner FROM sync_status") == [(None,)]  # released on the way out

    # Pub/Sub redelivers the same message; a committed page makes the tick continue the run.
    pipeline = env.pipeline(SYNC_PAGE_SIZE="50")
    outcome = pipeline.handle(message)
    while outcome.continuation is not None:
        outcome = pipeline.handle(outcome.continuation)
    _assert_converged(env, data)


@pytest.mark.parametrize("step", ["leased", "read", "written", "committed", "published"])
def test_process_killed_between_steps_converges(env, step):
    data = _seeded(env)
    # A lease long enough that a loaded machine cannot let it lapse before the busy check below.
    child_env = {**os.environ, **env.env_vars(SYNC_PAGE_SIZE="50", SYNC_LEASE_SECONDS="60")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "crash_runner.py"), step, encode(Message.tick()).decode()],
        env=child_env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 86, proc.stderr.decode()[-2000:]
    held = env.query("SELECT lease_owner IS NOT NULL FROM sync_status")[0][0]
    assert held == (step not in {"committed", "published"})  # the commit releases the lease

    pipeline = env.pipeline(SYNC_PAGE_SIZE="50", SYNC_LEASE_SECONDS="60")
    if held:
        assert pipeline.handle(Message.tick()).action == "busy"  # a dead holder still blocks ...
        # ... until its lease expires: move the stored expiry into the past rather than wait a minute.
        env.query("UPDATE sync_status SET lease_expires_at = clock_timestamp() - interval '1 second'")
    outcome = pipeline.handle(Message.tick())
    while outcome.continuation is not None:
        outcome = pipeline.handle(outcome.continuation)
    _assert_converged(env, data)


def test_publish_failure_after_commit_is_resumed_by_the_next_tick(env, fail_publisher):
    data = _seeded(env)
    pipeline = env.pipeline(fail_publisher, SYNC_PAGE_SIZE="50")
    first = pipeline.handle(Message.tick())  # commits page 1, then the publish fails
    assert first.action == "page"
    assert not first.run_done
    assert env.query("SELECT run_next_page, status FROM sync_status") == [(2, "running")]

    outcomes = env.drain(Message.tick(), SYNC_PAGE_SIZE="50")  # the scheduler's next tick
    assert outcomes[0].run_id == first.run_id  # resumed, not restarted
    _assert_converged(env, data)


def test_lease_overrun_is_fenced_at_commit(env):
    data = _seeded(env)
    resumed = threading.Event()

    def stall_after_read(step):
        if step == "read":
            time.sleep(1.5)  # overrun the 1 s lease; another invocation takes over meanwhile
            resumed.set()

    slow = env.pipeline(checkpoint=stall_after_read, SYNC_LEASE_SECONDS="1", SYNC_PAGE_SIZE="1000")
    errors = []

    def run_slow():
        try:
            slow.handle(Message.tick())
        except StaleLeaseError as err:
            errors.append(err)

    worker = threading.Thread(target=run_slow)
    worker.start()
    time.sleep(1.2)
    env.drain(SYNC_LEASE_SECONDS="60", SYNC_PAGE_SIZE="1000")
    worker.join(60)
    assert resumed.is_set()
    assert len(errors) == 1  # the overrunning invocation wrote nothing
    _assert_converged(env, data)


def test_stale_and_foreign_continuations_are_dropped(env):
    data = _seeded(env, n=90)
    pipeline = env.pipeline(SYNC_PAGE_SIZE="40")
    first = pipeline.handle(Message.tick())
    cont = first.continuation
    assert cont is not None
    forged = Message.continuation(cont.run_id, 7, cont.upper_bound)
    other_run = Message.continuation(first.run_id.__class__(int=1), 2, cont.upper_bound)
    assert pipeline.handle(forged).action == "dropped"
    assert pipeline.handle(other_run).action == "dropped"
    second = pipeline.handle(cont)
    assert pipeline.handle(cont).action == "dropped"  # late duplicate
    outcome = second
    while outcome.continuation is not None:
        outcome = pipeline.handle(outcome.continuation)
    _assert_converged(env, data)


def test_hop_limit_stops_a_runaway_chain(env):
    _seeded(env, n=60)
    pipeline = env.pipeline(SYNC_PAGE_SIZE="10", SYNC_MAX_PAGES="3")
    outcome = pipeline.handle(Message.tick())
    actions = []
    while outcome.continuation is not None:
        outcome = pipeline.handle(outcome.continuation)
        actions.append(outcome.action)
    assert actions[-1] == "stopped"
    status, error, run_id = env.query("SELECT status, last_error, run_id FROM sync_status")[0]
    assert status == "failed"
    assert "SYNC_MAX_PAGES=3" in error
    assert run_id is None


def test_postgres_restarted_mid_run(env, bq_client, tmp_path):
    cluster = Cluster.start()
    try:
        from sync.postgres.db import connect_url
        from sync.postgres.schema import migrate

        conn = connect_url(cluster.url)
        migrate(conn)
        conn.close()
        env.database_url = cluster.url
        data = _seeded(env)

        restarted = []

        def restart_after_read(step):
            if step == "read" and not restarted:
                cluster.restart()
                restarted.append(True)

        pipeline = env.pipeline(checkpoint=restart_after_read, SYNC_PAGE_SIZE="50")
        message = Message.tick()
        with pytest.raises(RetryableError):
            pipeline.handle(message)
        assert restarted
        outcome = pipeline.handle(message)  # the redelivery
        while outcome.continuation is not None:
            outcome = pipeline.handle(outcome.continuation)
        _assert_converged(env, data)
    finally:
        cluster.stop()


@pytest.fixture
def fail_publisher():
    from conftest import ListPublisher

    return ListPublisher(fail=True)
