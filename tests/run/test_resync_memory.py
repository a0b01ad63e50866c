"""Issue #9 section 3: full_resync redeliveries inside Pub/Sub's 7-day retention start nothing."""

from __future__ import annotations

import pytest
from projection import expected_projection

from standins.generator import generate
from sync.core.messages import Message


def _full_runs(env):
    return env.query("SELECT count(*) FROM sync_runs WHERE trigger = 'full_resync'")[0][0]


def test_a_b_then_both_redelivered_starts_two_runs(env):
    data = generate(60, seed=31)
    env.seed(data)
    pipeline = env.pipeline(SYNC_PAGE_SIZE="20")
    a = pipeline.handle(Message.full_resync("A"))
    b = pipeline.handle(Message.full_resync("B"))  # supersedes A's run mid-way
    assert (a.action, b.action) == ("page", "page")
    assert pipeline.handle(Message.full_resync("A")).action == "dropped"
    assert pipeline.handle(Message.full_resync("B")).action == "dropped"
    # B's chain is intact after the redeliveries, and finishes.
    outcome = b
    while outcome.continuation is not None:
        outcome = pipeline.handle(outcome.continuation)
    assert outcome.run_done
    assert pipeline.handle(Message.full_resync("A")).action == "dropped"  # still remembered after the run
    assert _full_runs(env) == 2
    assert env.projection() == expected_projection(data)
    assert {r[0] for r in env.query("SELECT message_id FROM sync_resync_messages")} == {"A", "B"}


def test_an_id_is_forgotten_once_pub_sub_can_no_longer_deliver_it(env):
    env.seed(generate(10, seed=32))
    env.drain(Message.full_resync("old"))
    env.query("UPDATE sync_resync_messages SET started_at = now() - interval '8 days 1 minute'")
    env.drain(Message.full_resync("new"))  # remembering "new" prunes what is past the horizon
    assert {r[0] for r in env.query("SELECT message_id FROM sync_resync_messages")} == {"new"}
    assert env.pipeline().handle(Message.full_resync("new")).action == "dropped"


def test_a_resync_that_crashed_before_its_first_commit_is_not_remembered(env):
    env.seed(generate(10, seed=33))

    class Crash(Exception):
        pass

    def crash(step):
        if step == "written":
            raise Crash

    with pytest.raises(Exception, match="Crash"):
        env.pipeline(checkpoint=crash).handle(Message.full_resync("C"))
    assert env.query("SELECT count(*) FROM sync_resync_messages") == [(0,)]
    # Pub/Sub redelivers C: it starts, since it never did.
    assert env.pipeline().handle(Message.full_resync("C")).action == "page"
    assert _full_runs(env) == 1


def test_a_full_resync_replayed_from_the_dead_letters_after_it_started_starts_nothing(env):
    """Its redeliveries met the lease its own chain held until Pub/Sub dead-lettered it; the replay has a new id."""
    data = generate(60, seed=34)
    env.seed(data)
    pipeline = env.pipeline(SYNC_PAGE_SIZE="20")
    (requested,) = env.query("SELECT now()")[0]
    first = pipeline.handle(Message.full_resync("original"))
    assert first.action == "page"

    replayed = pipeline.handle(Message.full_resync("replayed", requested))
    assert replayed.action == "dropped"
    assert "started after this full_resync was requested" in replayed.reason
    outcome = first  # the first resync's chain is intact and finishes
    while outcome.continuation is not None:
        outcome = pipeline.handle(outcome.continuation)
    assert outcome.run_done
    assert _full_runs(env) == 1
    assert env.projection() == expected_projection(data)

    # A request published after every resync started is a new one, replayed or not.
    (later,) = env.query("SELECT now()")[0]
    assert pipeline.handle(Message.full_resync("replayed-later", later)).action == "page"
    assert _full_runs(env) == 2
