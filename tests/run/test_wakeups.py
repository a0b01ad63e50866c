"""The webhook's ticks and the run's follow-up (sync/run/wakeups.py), on a real Postgres.

Each test drives the rules the way the two functions do: ``request`` in the webhook's
transaction, ``run_began`` in a new run's attempt record, ``follow_up`` after a run's last commit.
The pipeline tests at the end run real pages and check the follow-up tick the pipeline publishes.
"""

from __future__ import annotations

import threading
import time

import pytest
from conftest import ListPublisher, query_url

from standins.generator import generate
from sync.core.messages import Message, MessageType
from sync.postgres.db import connect_url
from sync.postgres.transaction import transaction
from sync.run import wakeups


class Ticks:
    """Counts the ticks a rule publishes; ``fail`` makes the next publish raise."""

    def __init__(self) -> None:
        self.count = 0
        self.fail = False

    def __call__(self) -> None:
        if self.fail:
            msg = "publish failed (injected)"
            raise ConnectionError(msg)
        self.count += 1


def _request(url: str, ticks: Ticks) -> bool:
    conn = connect_url(url)
    try:
        with transaction(conn):
            return wakeups.request(conn, ticks)
    finally:
        conn.close()


def _follow_up(url: str, ticks: Ticks) -> bool:
    conn = connect_url(url)
    try:
        with transaction(conn):
            return wakeups.follow_up(conn, ticks)
    finally:
        conn.close()


def _run_began(url: str) -> None:
    conn = connect_url(url)
    try:
        with transaction(conn):
            wakeups.run_began(conn)
    finally:
        conn.close()


def test_a_burst_publishes_one_tick_until_a_run_begins(database_url):
    ticks = Ticks()
    # Five connectors end together: the first publishes, the other four find it outstanding.
    assert [_request(database_url, ticks) for _ in range(5)] == [True, False, False, False, False]
    assert ticks.count == 1
    # The tick began a run: it is no longer outstanding, so the next sync_end publishes again.
    _run_began(database_url)
    assert _request(database_url, ticks) is True
    assert ticks.count == 2


def test_a_request_before_the_run_began_needs_no_follow_up(database_url):
    ticks = Ticks()
    _request(database_url, ticks)
    _run_began(database_url)
    assert _follow_up(database_url, ticks) is False
    assert ticks.count == 1


def test_a_request_during_the_run_gets_one_follow_up(database_url):
    ticks = Ticks()
    _run_began(database_url)
    # A tick published before the run began is not outstanding: this one publishes; it lands on
    # the run in progress, whose bound is already frozen.
    assert _request(database_url, ticks) is True
    assert _request(database_url, ticks) is False  # the burst goes on: still one tick
    assert _follow_up(database_url, ticks) is True
    assert ticks.count == 2
    # The follow-up is outstanding until its run begins: more sync_end events add no tick.
    assert _request(database_url, ticks) is False
    _run_began(database_url)
    assert _follow_up(database_url, ticks) is False  # the follow-up's run covered every request
    assert ticks.count == 2


def test_no_request_no_follow_up(database_url):
    ticks = Ticks()
    assert _follow_up(database_url, ticks) is False
    _run_began(database_url)
    assert _follow_up(database_url, ticks) is False
    assert ticks.count == 0


def test_a_failed_publish_records_nothing(database_url):
    ticks = Ticks()
    ticks.fail = True
    with pytest.raises(ConnectionError):
        _request(database_url, ticks)
    assert query_url(database_url, "SELECT requested_at, tick_published_at FROM sync_wakeups") == [(None, None)]
    # Fivetran retries; the retry publishes, since no tick went out.
    ticks.fail = False
    assert _request(database_url, ticks) is True


def test_a_deleted_row_is_recreated(database_url):
    query_url(database_url, "DELETE FROM sync_wakeups")
    ticks = Ticks()
    assert _request(database_url, ticks) is True
    assert query_url(database_url, "SELECT count(*) FROM sync_wakeups") == [(1,)]


def test_the_run_end_waits_for_a_request_being_published_and_sees_it(database_url):
    # The race rules 1 and 3 close: the webhook is publishing (its tick will land on the run in
    # progress) while the run ends. The end must wait for the webhook's commit and follow up.
    _run_began(database_url)
    inside, release = threading.Event(), threading.Event()

    def slow_publish() -> None:
        inside.set()
        assert release.wait(30)

    webhook = threading.Thread(target=lambda: _request(database_url, slow_publish))  # type: ignore[arg-type]
    webhook.start()
    assert inside.wait(30)
    ended: list[bool] = []
    ticks = Ticks()
    end = threading.Thread(target=lambda: ended.append(_follow_up(database_url, ticks)))
    end.start()
    waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    while query_url(database_url, waiting) != [(1,)]:
        assert end.is_alive(), "the run's end did not wait for the webhook's row lock"
        time.sleep(0.05)
    release.set()
    webhook.join(30)
    end.join(30)
    assert ended == [True]
    assert ticks.count == 1


def test_pipeline_follows_up_a_sync_end_that_arrived_mid_run(env):
    env.seed(generate(30, seed=71))
    publisher = ListPublisher()
    pipeline = env.pipeline(publisher, SYNC_PAGE_SIZE="10")
    first = pipeline.handle(Message.tick())
    assert first.continuation is not None
    # Fivetran ends a sync after the run froze its bound: the webhook records it.
    assert _request(env.database_url, Ticks()) is True
    outcomes = [first]
    while outcomes[-1].continuation is not None:
        outcomes.append(pipeline.handle(outcomes[-1].continuation))
    assert outcomes[-1].run_done
    ticks = [m for m in publisher.sent if m.type is MessageType.TICK]
    assert ticks == [Message.tick()]
    # The follow-up begins a new run, which covers the request: its end publishes nothing more.
    publisher.sent.clear()
    assert pipeline.handle(Message.tick()).run_done
    assert publisher.sent == []


def test_pipeline_publishes_no_follow_up_for_a_request_it_covered(env):
    env.seed(generate(5, seed=72))
    assert _request(env.database_url, Ticks()) is True
    publisher = ListPublisher()
    outcome = env.pipeline(publisher).handle(Message.tick())
    assert outcome.run_done
    assert publisher.sent == []
    began = query_url(env.database_url, "SELECT run_begun_at > requested_at FROM sync_status, sync_wakeups")
    assert began == [(True,)]


def test_a_sync_end_while_the_run_is_reading_is_not_left_for_the_scheduler(env):
    # The case the follow-up exists for: the webhook's tick lands while the only page of a run is
    # being read. That tick is answered "busy" and acknowledged; the run's bound is already frozen.
    env.seed(generate(8, seed=73))
    publisher = ListPublisher()
    busy: list[str] = []

    def during_read(step: str) -> None:
        if step == "read" and not busy:
            assert _request(env.database_url, Ticks()) is True
            busy.append(env.pipeline(publisher).handle(Message.tick()).action)

    outcome = env.pipeline(publisher, checkpoint=during_read).handle(Message.tick())
    assert outcome.run_done
    assert busy == ["busy"]
    assert publisher.sent == [Message.tick()]  # the follow-up: a new run will read what landed
