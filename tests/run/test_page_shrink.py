"""Issue #9 section 7: a page that keeps timing out is retried smaller, then grows back; one row that
always times out is refused alone and the run moves on (the one rule in ``sync/run/pacing.py``)."""

from __future__ import annotations

import logging

from projection import expected_projection
from serving import install_slow_rows

from standins.generator import generate
from sync.core.errors import RetryableError
from sync.core.messages import Message
from sync.run.pacing import STRIKES_TO_SHRINK

# Inserting costs 35 ms per row (a statement trigger sleeps for the rows it sees), against a
# 1 s statement_timeout: a page of 40 new rows times out, a page of 20 fits.
_SLOW_INSERTS = (
    "CREATE FUNCTION test_slow_inserts() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " PERFORM pg_sleep(0.035 * (SELECT count(*) FROM inserted)); RETURN NULL; END $$",
    "CREATE TRIGGER test_slow_inserts AFTER INSERT ON opportunities REFERENCING NEW TABLE AS inserted"
    " FOR EACH STATEMENT EXECUTE FUNCTION test_slow_inserts()",
)


def _deliver_until_done(pipeline, first, limit=40):
    """Pub/Sub's side: redeliver a message whose handler raised, follow continuations."""
    message, failures, outcome = first, [], None
    for _ in range(limit):
        try:
            outcome = pipeline.handle(message)
        except RetryableError as err:
            failures.append(err)
            continue
        if outcome.continuation is None:
            return outcome, failures
        message = outcome.continuation
    raise AssertionError(f"no progress after {limit} deliveries: {failures[-3:]}")


def test_a_page_that_times_out_is_retried_at_half_the_size_and_grows_back(env, caplog):
    data = generate(100, seed=71, messy=False)
    env.seed(data)
    db = env.database_url.rpartition("/")[2]
    env.query(f"ALTER DATABASE \"{db}\" SET statement_timeout = '1s'")
    for sql in _SLOW_INSERTS:
        env.query(sql)

    with caplog.at_level(logging.WARNING):
        outcome, failures = _deliver_until_done(env.pipeline(SYNC_PAGE_SIZE="40"), Message.tick())

    assert outcome.run_done
    assert env.projection() == expected_projection(data)
    assert failures, "the scenario must really time out"
    assert all("57014" in str(f) for f in failures)  # statement_timeout, not anything else
    shrunk = [r for r in caplog.records if getattr(r, "event", None) == "page_shrunk"]
    assert [r.page_size for r in shrunk] == [20] * len(failures)
    # The run records the smaller page; after a page commits at 20 the limit doubles back to 40.
    assert env.query("SELECT status, smallest_page_size FROM sync_runs") == [("success", 20)]
    assert env.query("SELECT status, page_size_limit FROM sync_status") == [("success", None)]


def test_an_unchanged_rerun_is_not_slowed_and_pages_stay_full(env):
    data = generate(100, seed=72, messy=False)
    env.seed(data)
    env.drain(SYNC_PAGE_SIZE="40")
    db = env.database_url.rpartition("/")[2]
    env.query(f"ALTER DATABASE \"{db}\" SET statement_timeout = '1s'")
    for sql in _SLOW_INSERTS:
        env.query(sql)
    env.drain(Message.full_resync("again"), SYNC_PAGE_SIZE="40")  # nothing new to insert: nothing slow
    assert env.query("SELECT smallest_page_size FROM sync_runs WHERE trigger = 'full_resync'") == [(None,)]


def test_a_row_whose_write_always_times_out_is_refused_alone_and_the_run_moves_on(env, caplog):
    data = generate(30, seed=73, messy=False)
    env.seed(data)
    victim = sorted(data.rows("opportunity"), key=lambda o: (o["_fivetran_synced"], o["id"]))[5]["id"]
    db = env.database_url.rpartition("/")[2]
    env.query(f"ALTER DATABASE \"{db}\" SET statement_timeout = '1s'")
    install_slow_rows(env, 3, [victim])  # its write alone outlasts statement_timeout, every time

    with caplog.at_level(logging.WARNING):
        outcome, failures = _deliver_until_done(env.pipeline(SYNC_PAGE_SIZE="8"), Message.tick(), limit=60)

    assert outcome.run_done
    expected = expected_projection(data)
    expected.pop(victim)
    assert env.projection() == expected
    assert all("57014" in str(f) for f in failures)
    # Each timeout seen at more than one row halves the page at once; alone, the row is tried until
    # its timeouts weigh enough, then refused.
    shrunk = [r for r in caplog.records if getattr(r, "event", None) == "page_shrunk"]
    *halved, last = shrunk
    assert [(r.page_size, r.refused) for r in halved] == [(r.struck_at_page_size // 2, False) for r in halved]
    assert 1 in [r.page_size for r in halved]
    assert (last.struck_at_page_size, last.refused, last.strikes) == (1, True, STRIKES_TO_SHRINK)
    assert len(failures) == len(halved) + STRIKES_TO_SHRINK
    assert env.query("SELECT source_id, reason FROM sync_rejections") == [(victim, "page_died")]
    assert env.query("SELECT count(*) FROM sync_refused_rows") == [(1,)]
    assert env.query("SELECT status, page_attempts, page_attempt_size FROM sync_status") == [("success", 0, None)]
