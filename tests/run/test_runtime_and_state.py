"""Process-wide parts are built once; a missing state row is a permanent, explained failure."""

from __future__ import annotations

import pytest

from standins.generator import generate
from sync.core.errors import PermanentError, classify
from sync.core.messages import Message
from sync.postgres.transaction import transaction
from sync.run.runtime import Runtime
from sync.run.state import StateRowMissingError, read_state


def test_runtime_builds_one_publisher_per_process(env):
    runtime = Runtime(env.settings(SYNC_TOPIC="projects/local-project/topics/sync"))
    first = runtime.publisher()
    assert first is not None
    assert runtime.publisher() is first  # a warm instance reuses the client, as it does the BigQuery source


def test_runtime_without_topic_has_no_publisher(env):
    assert Runtime(env.settings()).publisher() is None


def test_missing_state_row_is_permanent_and_says_to_migrate(env):
    env.query("DELETE FROM sync_status")
    conn = env.connect()
    try:
        missing = pytest.raises(StateRowMissingError, match=r"run `python -m sync migrate` to restore it")
        with missing as info, transaction(conn):
            read_state(conn)
    finally:
        conn.close()
    assert isinstance(classify(info.value), PermanentError)  # acknowledged, not redelivered for 24 h


@pytest.mark.parametrize("message", [Message.tick(), Message.full_resync("m-1")])
def test_a_message_without_state_row_fails_permanently_instead_of_waiting_for_a_lease(env, message):
    env.seed(generate(5, seed=81, messy=False))
    env.query("DELETE FROM sync_status")
    with pytest.raises(StateRowMissingError, match="sync_status has no 'opportunities' row"):
        env.pipeline().handle(message)  # not "busy", which a tick would report forever
    assert env.query("SELECT count(*) FROM opportunities") == [(0,)]
