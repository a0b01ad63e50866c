"""``python -m sync`` as operators and scripts use it: real subprocesses, real exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from standins.generator import generate

ROOT = Path(__file__).resolve().parent.parent


def _cli(args, env_vars):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SYNC_", "DB_", "BIGQUERY_", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "-m", "sync", *args],
        cwd=ROOT,
        env={**clean, **env_vars},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("command", [[], ["migrate"], ["run"], ["status"], ["runs"], ["rejections"], ["preview"], ["publish"]])
def test_help(command):
    result = _cli([*command, "--help"], {})
    assert result.returncode == 0
    assert "usage: python -m sync" in result.stdout


def test_bad_config_exits_2_with_one_line_naming_every_variable():
    result = _cli(["status"], {"SYNC_PAGE_SIZE": "x"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "BIGQUERY_PROJECT is required" in lines[0]
    assert "SYNC_PAGE_SIZE must be an integer" in lines[0]


def test_migrate_run_status_runs_rejections(env):
    data = generate(250, seed=51)
    env.seed(data)
    vars_ = {**env.env_vars(), "SYNC_PAGE_SIZE": "100"}

    migrated = _cli(["migrate"], vars_)
    assert migrated.returncode == 0
    assert "schema at version 1" in migrated.stdout

    one = _cli(["run"], vars_)  # exactly one invocation: one page, no Pub/Sub configured
    assert one.returncode == 0, one.stderr
    assert "more pages remain" in one.stdout
    assert env.query("SELECT status, run_next_page FROM sync_status") == [("running", 2)]

    drained = _cli(["run", "--until-done"], vars_)
    assert drained.returncode == 0, drained.stderr
    assert "run complete" in drained.stdout

    status = _cli(["status", "--json"], vars_)
    assert status.returncode == 0
    parsed = json.loads(status.stdout)
    assert parsed["status"] == "success"
    assert parsed["opportunities"]["live"] == len(env.live_ids())
    assert parsed["last_run"]["status"] == "success"

    table = _cli(["status"], vars_).stdout.splitlines()
    live, links = env.query("SELECT (SELECT count(*) FROM active_opportunities), (SELECT count(*) FROM call_opportunities)")[0]
    assert re.fullmatch(r"status\s+success", table[0])
    counts = next(line for line in table if line.startswith("opportunities "))
    assert re.fullmatch(rf"opportunities\s+{live} live, 0 soft-deleted, {links} call links", counts)

    runs = _cli(["runs", "--json"], vars_)
    assert [r["status"] for r in json.loads(runs.stdout)] == ["success"]

    skipped = {o["id"] for o in data.rows("opportunity") if o["name"] is None}
    rejections = json.loads(_cli(["rejections", "--json", "--limit", "1000"], vars_).stdout)
    assert {r["source_id"] for r in rejections if r["reason"] == "missing_name"} == skipped


def test_failure_exits_nonzero_with_one_line(env):
    data = generate(5, seed=52, messy=False)
    del data.schemas["opportunity"]["close_date"]
    env.seed(data)
    result = _cli(["run"], env.env_vars())
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: table")
    assert "close_date" in result.stderr


def test_preview_reports_the_next_page_and_writes_nothing(env):
    import datetime as dt

    from standins.generator import BASE_TIME

    data = generate(80, seed=53)
    data.rows("opportunity")[5]["name"] = None
    env.seed(data)
    vars_ = {**env.env_vars(), "SYNC_PAGE_SIZE": "1000"}
    before = env.query("SELECT count(*), (SELECT (status, xmin::text) FROM sync_status) FROM opportunities")
    first = json.loads(_cli(["preview", "--json"], vars_).stdout)
    valid = [o for o in data.rows("opportunity") if o["name"] is not None]
    assert first["would_insert"] == sum(1 for o in valid if not o["is_deleted"])
    assert first["would_skip"] == len(data.rows("opportunity")) - len(valid)
    assert {i["reason"] for i in first["issues"]} >= {"missing_name"}
    assert env.query("SELECT count(*), (SELECT (status, xmin::text) FROM sync_status) FROM opportunities") == before
    assert env.query("SELECT count(*) FROM sync_rejections") == [(0,)]

    assert _cli(["run", "--until-done"], vars_).returncode == 0
    env.update(
        "opportunity",
        "id",
        valid[0]["id"],
        stage_name="Closed Won",
        _fivetran_synced=(BASE_TIME + dt.timedelta(days=1)).isoformat(),
    )
    second = json.loads(_cli(["preview", "--json"], vars_).stdout)
    assert (second["would_insert"], second["would_update"]) == (0, 1)
    # Rows on the watermark's own stamp are re-read (the range is closed there) and cost nothing.
    assert second["unchanged"] == second["rows_read"] - 1 - second["would_skip"]
    table = _cli(["preview"], vars_).stdout
    assert "would_update  1" in table


def test_until_done_on_a_terminal_shows_progress_and_keeps_logs_quiet(env):
    import pty

    env.seed(generate(120, seed=54, messy=False))
    vars_ = {k: v for k, v in os.environ.items() if k != "LOG_LEVEL"}
    vars_ |= {**env.env_vars(), "SYNC_PAGE_SIZE": "50"}
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sync", "run", "--until-done"], cwd=ROOT, env=vars_, stdout=follower, stderr=subprocess.PIPE
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the pty closes when the child exits
            break
        if not chunk:
            break
        shown += chunk
    _, stderr = proc.communicate(timeout=120)
    os.close(leader)
    assert proc.returncode == 0
    assert b"page 3, 120 rows read" in shown
    assert b"run complete" in shown
    assert b"page_committed" not in stderr
