"""Issue 26: a dead invocation's database session must not block the next one.

The serving process group is killed (SIGKILL) while its page holds the ``sync_status`` row lock
and sits in a slow statement. Postgres must end that orphaned session within seconds (it polls
the client's socket, ``client_connection_check_interval``), so that the next delivery after the
lease expires commits promptly; deliveries before that answer "busy" at once instead of hanging
on the lock. The table ends exact.
"""

from __future__ import annotations

import socket
import time

import pytest
from projection import expected_projection
from serving import (
    Server,
    first_in_read_order,
    install_slow_rows,
    session_alive,
    sleeping_sessions,
    status_row_locked,
    wait_until,
)

from standins.generator import generate
from sync.bigquery.cursor import Keyset
from sync.bigquery.source import StreamRead
from sync.bigquery.streams import StreamKind
from sync.core.deadline import LEASE_LOCK_WAIT_SECONDS
from sync.core.errors import LeaseBusyError
from sync.core.messages import Message
from sync.postgres import db

LEASE = 3
# The orphaned statement would run this long if nothing ended it.
SLEEP = 120


def _server_env(env, **overrides):
    return env.env_vars(
        SYNC_PAGE_SIZE="40",
        SYNC_LEASE_SECONDS=str(LEASE),
        SYNC_TIME_BUDGET_SECONDS="240",
        SYNC_TOPIC="projects/local-project/topics/sync",
        PUBSUB_EMULATOR_HOST="127.0.0.1:9",  # never reached: the page dies before it publishes
        **overrides,
    )


def test_killed_holder_of_the_status_row_lock_does_not_block_the_next_delivery(env, tmp_path):
    data = generate(100, seed=261, messy=False)
    env.seed(data)
    install_slow_rows(env, SLEEP, [first_in_read_order(data)])
    # Warm the in-process BigQuery emulator, so the timing below is the lock's, not a cold start's.
    env.source().read(StreamRead(StreamKind.OPPORTUNITIES, Keyset.start(), None, None, 1, time.monotonic() + 60))

    server = Server(_server_env(env), tmp_path / "function.log")
    try:
        server.push({"type": "tick"})
        wait_until(lambda: sleeping_sessions(env), 60, "the page to reach the slow row")
        (orphan,) = sleeping_sessions(env)
        assert status_row_locked(env), "the page must hold the sync_status row lock when it is killed"
        server.kill()
    finally:
        server.stop()
    killed = time.monotonic()
    env.query("DELETE FROM test_slow_ids")  # the next delivery's page is not slow

    # The server notices the dead client during the statement and ends the session.
    gone = wait_until(lambda: not session_alive(env, orphan), 30, "the orphaned session to end")
    assert gone < 5, f"the orphaned session lived {gone:.1f} s after the kill"

    # Pub/Sub redelivers; every delivery answers at once until one commits.
    pipeline = env.pipeline(SYNC_PAGE_SIZE="40", SYNC_LEASE_SECONDS=str(LEASE))
    answered_in, outcome = [], None
    while outcome is None or outcome.action != "page":
        asked = time.monotonic()
        try:
            outcome = pipeline.handle(Message.tick())
        except LeaseBusyError:
            outcome = None
        answered_in.append(time.monotonic() - asked)
        assert time.monotonic() - killed < LEASE + 30, "no delivery committed"
        if outcome is None or outcome.action != "page":
            time.sleep(0.25)
    committed = time.monotonic() - killed
    assert max(answered_in[:-1], default=0) < LEASE_LOCK_WAIT_SECONDS + 1  # busy, not a hang
    assert committed < LEASE + 5, f"the next delivery committed {committed:.1f} s after the kill"
    print(f"\norphan session ended {gone:.1f} s after the kill; first commit {committed:.1f} s after it")

    while outcome.continuation is not None:
        outcome = pipeline.handle(outcome.continuation)
    assert env.projection() == expected_projection(data)
    assert env.query("SELECT status, run_id, lease_owner FROM sync_status") == [("success", None, None)]


def test_a_lock_wait_on_the_status_row_ends_as_busy(env):
    """A live session holding the row lock past the lock wait: the delivery is busy, not hung."""
    env.seed(generate(10, seed=262, messy=False))
    env.query("UPDATE sync_status SET lease_expires_at = now() - interval '1 hour', lease_owner = gen_random_uuid()")
    holder = db.connect_url(env.database_url)
    try:
        holder.cursor().execute("SELECT 1 FROM sync_status FOR UPDATE")
        pipeline = env.pipeline()
        asked = time.monotonic()
        assert pipeline.handle(Message.tick()).action == "busy"
        with pytest.raises(LeaseBusyError):
            pipeline.handle(Message.full_resync("r-1"))
        waited = time.monotonic() - asked
        assert 2 * LEASE_LOCK_WAIT_SECONDS - 1 < waited < 2 * LEASE_LOCK_WAIT_SECONDS + 3
    finally:
        holder.rollback()
        holder.close()
    env.drain()
    assert env.query("SELECT status FROM sync_status") == [("success",)]


def test_every_connection_asks_the_server_to_notice_a_dead_client(env):
    conn = db.connect_url(env.database_url)
    try:
        cur = conn.cursor()
        cur.execute(
            "SELECT current_setting('client_connection_check_interval'), current_setting('idle_in_transaction_session_timeout'),"
            " current_setting('tcp_keepalives_idle'), current_setting('tcp_keepalives_interval'),"
            " current_setting('tcp_keepalives_count')"
        )
        assert tuple(cur.fetchone()) == ("2s", "30s", "5", "2", "3")
        sock = conn._usock
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 5
    finally:
        conn.close()


def test_an_idle_transaction_left_by_a_client_is_ended(env):
    conn = db.connect_url(env.database_url)
    try:
        cur = conn.cursor()
        cur.execute("SET idle_in_transaction_session_timeout = '300ms'")  # the 30 s default, shortened
        conn.commit()
        cur.execute("SELECT pg_backend_pid()")
        (pid,) = cur.fetchone()
        cur.execute("SELECT 1 FROM sync_status FOR UPDATE")  # holds the row lock, then goes idle
        wait_until(lambda: not session_alive(env, pid), 10, "the idle session to end")
        assert not status_row_locked(env)
    finally:
        conn.close()
