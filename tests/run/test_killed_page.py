"""Issue 22 section 1: a page whose invocation is killed before it commits is read smaller.

The serving process group (functions-framework, ``main.py``) is SIGKILLed mid-page three times in
a row on the same page, as a platform timeout or an out-of-memory kill would: nothing of ours runs
afterwards. Only the attempt recorded before the read survives. The fourth delivery reads the
page at half the size and commits, and the run finishes with the table exact.
"""

from __future__ import annotations

from projection import expected_projection
from serving import Server, first_in_read_order, install_slow_rows, session_alive, sleeping_sessions, wait_until

from standins.generator import generate
from sync.core.messages import Message
from sync.run.pacing import STRIKES_TO_SHRINK

PAGE = 40
LEASE = 2
SLEEP = 120  # the slow row would hold the page this long: the kill comes first


def _lease_free(env) -> bool:
    rows = env.query("SELECT lease_owner IS NULL OR lease_expires_at < clock_timestamp() FROM sync_status")
    return bool(rows[0][0])


def _kill_mid_page(env, tmp_path, n: int) -> None:
    server = Server(
        env.env_vars(
            SYNC_PAGE_SIZE=str(PAGE),
            SYNC_LEASE_SECONDS=str(LEASE),
            SYNC_TOPIC="projects/local-project/topics/sync",
            PUBSUB_EMULATOR_HOST="127.0.0.1:9",  # never reached: the page dies before it publishes
        ),
        tmp_path / f"function-{n}.log",
    )
    try:
        sent = server.push({"type": "tick"}, message_id="m-1")  # the same message, redelivered
        wait_until(lambda: sleeping_sessions(env), 60, "the page to reach the slow row")
        (orphan,) = sleeping_sessions(env)
        server.kill()
    finally:
        server.stop()
    sent.join(10)
    # No HTTP status: the connection died with the server, as Pub/Sub sees a killed instance.
    assert not [a for a in server.answers if isinstance(a, int)], server.answers
    wait_until(lambda: not session_alive(env, orphan), 30, "the orphaned session to end")
    wait_until(lambda: _lease_free(env), LEASE + 10, "the lease to expire")


def test_a_page_killed_three_times_is_read_at_half_the_size(env, tmp_path):
    data = generate(100, seed=221, messy=False)
    env.seed(data)
    install_slow_rows(env, SLEEP, [first_in_read_order(data)])

    for n in range(1, STRIKES_TO_SHRINK + 1):
        _kill_mid_page(env, tmp_path, n)
        # Recorded before the read, committed on its own: the only trace a killed page leaves.
        assert env.query("SELECT page_attempts, page_attempt_size, last_sync_timestamp FROM sync_status") == [(n, PAGE, None)]
    assert env.query("SELECT count(*) FROM opportunities") == [(0,)]

    env.query("DELETE FROM test_slow_ids")  # whatever made it slow is gone; only the size matters now
    pipeline = env.pipeline(SYNC_PAGE_SIZE=str(PAGE), SYNC_LEASE_SECONDS=str(LEASE))
    fourth = pipeline.handle(Message.tick())
    assert fourth.action == "page"
    assert fourth.rows_read == PAGE // 2, "the fourth delivery must read the page at half the size"
    assert env.query("SELECT page_attempts, page_attempt_size FROM sync_status") == [(0, None)]

    outcome = fourth
    while outcome.continuation is not None:
        outcome = pipeline.handle(outcome.continuation)
    assert outcome.run_done
    assert env.projection() == expected_projection(data)
    assert env.query("SELECT status, smallest_page_size FROM sync_runs") == [("success", PAGE // 2)]
    assert env.query("SELECT status, lease_owner, page_attempts FROM sync_status") == [("success", None, 0)]
