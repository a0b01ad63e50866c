"""The instance's kept connection: reused after a clean invocation, never after a failed one,
replaced when the server dropped it. Real Postgres; sessions told apart by backend pid."""

from __future__ import annotations

import logging

from conftest import query_url
from projection import expected_projection

from standins.generator import generate
from sync.core.errors import RetryableError
from sync.core.messages import Message
from sync.postgres.db import connect_url
from sync.postgres.idle import IdleConnection
from sync.run.pipeline import Pipeline


def _pid(conn) -> int:
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    conn.commit()
    return pid


class _Counting:
    """Opens real connections and counts them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opened = 0

    def __call__(self):
        self.opened += 1
        return connect_url(self.url)


def test_a_connection_given_back_clean_is_the_next_one_taken(database_url):
    idle = IdleConnection(_Counting(database_url))
    first = idle.take()
    pid = _pid(first)
    idle.give_back(first, failed=False)
    again = idle.take()
    assert again is first
    assert _pid(again) == pid
    idle.give_back(again, failed=False)
    idle.close()


def test_a_connection_an_invocation_failed_on_is_closed_not_kept(database_url):
    connect = _Counting(database_url)
    idle = IdleConnection(connect)
    first = idle.take()
    pid = _pid(first)
    idle.give_back(first, failed=True)
    second = idle.take()
    assert _pid(second) != pid
    assert connect.opened == 2
    live = {r[0] for r in query_url(database_url, "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")}
    assert pid not in live, "the failed invocation's session must be gone"
    idle.give_back(second, failed=False)
    idle.close()


def test_a_kept_connection_the_server_dropped_is_replaced_before_use(database_url, caplog):
    connect = _Counting(database_url)
    idle = IdleConnection(connect)
    first = idle.take()
    pid = _pid(first)
    idle.give_back(first, failed=False)
    query_url(database_url, "SELECT pg_terminate_backend(%s)", (pid,))

    with caplog.at_level(logging.INFO, logger="sync.postgres.idle"):
        replaced = idle.take()
    assert replaced is not first
    assert _pid(replaced) != pid
    assert connect.opened == 2
    assert [r.event for r in caplog.records] == ["connection_reopened"]
    idle.give_back(replaced, failed=False)
    idle.close()


def test_a_run_through_one_kept_connection_converges_and_a_failure_costs_one_reconnect(env):
    data = generate(60, seed=91, messy=False)
    env.seed(data)
    connect = _Counting(env.database_url)
    idle = IdleConnection(connect)
    reads = []

    def fail_third_read(step):
        if step == "read":
            reads.append(step)
            if len(reads) == 3:
                raise ConnectionError("injected: the page fails after its read")

    pipeline = Pipeline(
        env.settings(SYNC_PAGE_SIZE="10"),
        env.source(),
        idle.take,
        checkpoint=fail_third_read,
        release=lambda conn, failed: idle.give_back(conn, failed=failed),
    )
    message, failures, pages = Message.tick(), 0, 0
    while message is not None:
        try:
            message = pipeline.handle(message).continuation
            pages += 1
        except RetryableError:
            failures += 1  # Pub/Sub redelivers the same message
    idle.close()

    assert (failures, pages) == (1, 7)
    # Every page before the failure shared one session; the failed one was closed, not kept.
    assert connect.opened == 2
    assert env.projection() == expected_projection(data)
