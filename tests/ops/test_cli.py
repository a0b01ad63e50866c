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
from sync.postgres.schema import available

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.mark.parametrize(
    "command", [[], ["migrate"], ["run"], ["status"], ["runs"], ["rejections"], ["preview"], ["publish"], ["release-deletes"]]
)
def test_help(command):
    result = _cli([*command, "--help"], {})
    assert result.returncode == 0
    assert "usage: python -m sync" in result.stdout


def test_bad_config_exits_2_with_one_line_naming_every_variable_and_the_command():
    result = _cli(["run"], {"SYNC_PAGE_SIZE": "x"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: python -m sync run reads BigQuery and writes Postgres; invalid configuration")
    assert "BIGQUERY_PROJECT is required" in lines[0]
    assert "DATABASE_URL or INSTANCE_CONNECTION_NAME" in lines[0]
    assert "SYNC_PAGE_SIZE must be an integer" in lines[0]


@pytest.mark.parametrize("command", ["status", "runs", "rejections", "migrate", "release-deletes"])
def test_database_only_commands_name_only_the_database_settings(command):
    result = _cli([command], {})
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: python -m sync {command} ")
    assert "DATABASE_URL or INSTANCE_CONNECTION_NAME" in line
    assert "BIGQUERY_PROJECT" not in line


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["runs", "--limit", "-1"], "'-1'"),  # reached Postgres as LIMIT -1 and came back as its raw error
        (["runs", "--limit", "0"], "'0'"),  # an empty table nobody asks for
        (["rejections", "--limit", "\u0663"], "'\u0663'"),  # int() reads it as 3
        (["rejections", "--limit", "ten"], "'ten'"),
    ],
)
def test_a_limit_below_one_is_a_usage_error_before_anything_is_read(env, args, shown):
    result = _cli(args, env.env_vars())
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"argument --limit: must be a whole number of at least 1, got {shown}" in result.stderr
    assert "SQLSTATE" not in result.stderr


def test_publish_needs_only_the_topic():
    result = _cli(["publish", "tick"], {})
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: python -m sync publish publishes to Pub/Sub only; ")
    assert "SYNC_TOPIC is required" in line
    assert "BIGQUERY_PROJECT" not in line
    assert "DATABASE_URL" not in line


def test_read_only_commands_run_without_bigquery_settings(env):
    env.seed(generate(40, seed=57, messy=False))
    vars_ = env.env_vars()
    assert _cli(["run", "--until-done"], vars_).returncode == 0
    database_only = {"DATABASE_URL": vars_["DATABASE_URL"]}
    for command in (["status"], ["runs"], ["rejections"], ["status", "--json"], ["migrate"]):
        result = _cli(command, database_only)
        assert result.returncode == 0, (command, result.stderr)
    preview = _cli(["preview"], database_only)
    assert preview.returncode == 2
    assert "python -m sync preview reads BigQuery and Postgres; invalid configuration: BIGQUERY_PROJECT is required" in (
        preview.stderr
    )


def test_migrate_run_status_runs_rejections(env):
    data = generate(250, seed=51)
    env.seed(data)
    vars_ = {**env.env_vars(), "SYNC_PAGE_SIZE": "100"}

    migrated = _cli(["migrate"], vars_)
    assert migrated.returncode == 0
    assert f"schema at version {max(m.version for m in available())}" in migrated.stdout

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
    counts = next(line for line in table if line.startswith("opportunities in Postgres "))
    assert re.fullmatch(rf"opportunities in Postgres\s+{live} live, 0 soft-deleted, {links} call links", counts)

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
    # Rows deleted in the source that Postgres never held are counted as such, not as unchanged.
    assert second["deleted_not_stored"] == sum(1 for o in valid if o["is_deleted"]) > 0
    assert second["unchanged"] == second["rows_read"] - 1 - second["would_skip"] - second["deleted_not_stored"]
    table = _cli(["preview"], vars_).stdout
    assert re.search(r"^  would update +1$", table, re.MULTILINE), table


def test_until_done_on_a_terminal_shows_progress_and_keeps_logs_quiet(env):
    import pty

    env.seed(generate(120, seed=54, messy=False))
    vars_ = {k: v for k, v in os.environ.items() if k != "LOG_LEVEL"}
    vars_ |= {**env.env_vars(), "SYNC_PAGE_SIZE": "50"}
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sync", "run", "--until-done"], cwd=ROOT, env=vars_, stdout=subprocess.PIPE, stderr=follower
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
    stdout, _ = proc.communicate(timeout=120)
    os.close(leader)
    assert proc.returncode == 0
    # Progress goes to stderr, the terminal; stdout keeps only the summary.
    assert b"page 3, 120 rows read" in shown
    assert b"page_committed" not in shown, "per-page log lines stay quiet under the progress display"
    assert b"run complete" in stdout
    assert b"page 3," not in stdout, "no progress mixed into stdout"


def test_progress_is_silent_when_stderr_is_not_a_terminal(env):
    env.seed(generate(120, seed=54, messy=False))
    vars_ = {**env.env_vars(), "SYNC_PAGE_SIZE": "50", "LOG_LEVEL": "WARNING"}
    drained = _cli(["run", "--until-done"], vars_)
    assert drained.returncode == 0, drained.stderr
    assert drained.stderr == ""
    assert "run complete" in drained.stdout


EVIL_ID = "\x1b]0;PWNED\x07\x1b[2J"  # retitles the terminal, then clears the screen
# What a terminal acts on: C0/C1 controls, DEL, line separators, bidi overrides.
_CONTROL = {*map(chr, range(0x20)), *map(chr, range(0x7F, 0xA0)), "\u2028", "\u2029", "\u202e", "\u2066"}


def _assert_inert(text: str) -> None:
    assert not (set(text) - {"\n"}) & _CONTROL, [c for c in text if c in _CONTROL and c != "\n"]


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("006000000000001", "006000000000001"),  # plain ids are untouched
        ("Müller GmbH \u2013 東京商事 😀", "Müller GmbH \u2013 東京商事 😀"),  # so is any printable text
        (EVIL_ID, "\\x1b]0;PWNED\\x07\\x1b[2J"),  # OSC title + clear screen
        ("a\tb\r\nc", "a\\tb\\r\\nc"),  # a value cannot break a table row
        ("\x00\x7f\x9b", "\\x00\\x7f\\x9b"),  # NUL, DEL and the 8-bit CSI
        ("invoice\u202efdp.exe", "invoice\\u202efdp.exe"),  # a bidi override reorders what is shown
        ("\u2028\u2066", "\\u2028\\u2066"),  # line separator, bidi isolate
    ],
)
def test_printable_escapes_what_a_terminal_acts_on(raw, shown):
    from sync.ops.report import printable

    assert printable(raw) == shown


def test_human_output_escapes_control_characters_and_json_stays_exact(env):
    data = generate(30, seed=55, messy=False)
    data.rows("opportunity").append({**data.rows("opportunity")[0], "id": EVIL_ID, "name": None})  # skipped: no name
    env.seed(data)
    vars_ = env.env_vars()
    escaped = "\\x1b]0;PWNED\\x07\\x1b[2J"

    preview = _cli(["preview"], vars_)
    _assert_inert(preview.stdout)
    assert escaped in preview.stdout
    assert EVIL_ID in {i["source_id"] for i in json.loads(_cli(["preview", "--json"], vars_).stdout)["issues"]}

    assert _cli(["run", "--until-done"], vars_).returncode == 0
    rejections = _cli(["rejections"], vars_)
    _assert_inert(rejections.stdout)
    assert escaped in rejections.stdout
    assert EVIL_ID in {r["source_id"] for r in json.loads(_cli(["rejections", "--json"], vars_).stdout)}

    # An error text that quotes a source value, as Postgres and BigQuery errors can.
    error = f"row {EVIL_ID} refused\nsecond line \u202egnp.exe"
    env.query("UPDATE sync_status SET last_error = %s", (error,))
    env.query("UPDATE sync_runs SET error = %s", (error,))
    for command in (["status"], ["runs"], ["runs", "--wide"]):
        human = _cli(command, vars_)
        assert human.returncode == 0, human.stderr
        _assert_inert(human.stdout)
        if command != ["runs"]:  # the default runs table cuts the error to fit 100 columns
            assert f"row {escaped} refused\\nsecond line \\u202eg" in human.stdout
    assert json.loads(_cli(["status", "--json"], vars_).stdout)["last_error"] == error
    assert json.loads(_cli(["runs", "--json"], vars_).stdout)[0]["error"] == error


def test_missing_status_row_is_named_and_restored(env):
    env.seed(generate(20, seed=56, messy=False))
    vars_ = env.env_vars()
    env.query("DELETE FROM sync_status")

    status = _cli(["status"], vars_)
    assert status.returncode == 1
    assert "error: sync_status has no 'opportunities' row (it was deleted); run `python -m sync migrate`" in status.stderr
    # A login that does not migrate (the function's, SYNC_AUTO_MIGRATE=false) restores the row
    # too at its start: a row, not DDL. (The pipeline's own refusal: tests/run/test_runtime_and_state.py.)
    restored = _cli(["run"], {**vars_, "SYNC_AUTO_MIGRATE": "false"})
    assert restored.returncode == 0, restored.stderr
    assert '"event": "status_row_restored"' in restored.stderr
    env.query("DELETE FROM sync_status")

    migrated = _cli(["migrate"], vars_)
    assert migrated.returncode == 0, migrated.stderr
    assert "applied nothing" in migrated.stdout
    assert "sync_status has no 'opportunities' row (it was deleted); restored it" in migrated.stdout
    assert json.loads(_cli(["status", "--json"], vars_).stdout)["status"] == "never_run"

    # A cold start restores it as well: `run` migrates first, exactly as the function does.
    env.query("DELETE FROM sync_status")
    drained = _cli(["run", "--until-done"], vars_)
    assert drained.returncode == 0, drained.stderr
    assert '"event": "status_row_restored"' in drained.stderr
    assert env.query("SELECT status FROM sync_status") == [("success",)]


def test_migrate_without_privileges_says_what_to_do(empty_database_url):
    from conftest import database_role

    with database_role(empty_database_url) as role_url:
        result = _cli(["migrate"], {"BIGQUERY_PROJECT": "local-project", "DATABASE_URL": role_url})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "cannot apply migration 0001_schema: permission denied for schema public (SQLSTATE 42501)" in lines[0]
    assert "GRANT USAGE, CREATE ON SCHEMA public TO" in lines[0]
    assert "SYNC_AUTO_MIGRATE=false" in lines[0]


def test_missing_google_credentials_is_a_configuration_error(env, tmp_path):
    # No emulator endpoint, so the real client looks for credentials and finds none.
    vars_ = {k: v for k, v in env.env_vars().items() if k != "BIGQUERY_API_ENDPOINT"}
    vars_["GOOGLE_APPLICATION_CREDENTIALS"] = str(tmp_path / "no-such-key.json")
    result = _cli(["run"], vars_)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: invalid configuration: Google credentials are not available"), last


def test_labels_count_a_run_with_known_counts(env):
    """Every label against a run whose counts are known from the data: they add up to the rows read."""
    data = generate(60, seed=58, messy=False)
    opps = data.rows("opportunity")
    for o in opps:
        o["is_deleted"] = False
    for o in opps[:4]:
        o["is_deleted"] = True  # deleted in the source before the first run: never stored
    for o in opps[4:7]:
        o["name"] = None  # skipped: a required value is missing
    env.seed(data)
    vars_ = env.env_vars()

    first = _cli(["run", "--until-done"], vars_)
    assert first.returncode == 0, first.stderr
    assert (
        "1 page(s), 60 rows read: 53 inserted, 0 updated, 0 unchanged, 3 skipped,\n"
        "0 soft-deleted, 4 deleted in the source and never stored;"
    ) in first.stdout

    # Two edits and one deletion in the source; a full resync reads every row again.
    for o in opps[7:9]:
        env.update("opportunity", "id", o["id"], stage_name="Closed Won")
    env.update("opportunity", "id", opps[9]["id"], is_deleted=True)
    second = _cli(["run", "--until-done", "--full-resync"], {**vars_, "LOG_LEVEL": "INFO"})
    assert second.returncode == 0, second.stderr
    assert (
        "1 page(s), 60 rows read: 0 inserted, 2 updated, 50 unchanged, 3 skipped,\n"
        "1 soft-deleted, 4 deleted in the source and never stored;"
    ) in second.stdout
    # The log lines alerts and dashboards read carry the same counts under the same names.
    logged = {e["event"]: e for e in map(json.loads, second.stderr.splitlines()) if e.get("event")}
    assert logged["page_committed"]["rows_deleted_not_stored"] == logged["run_finished"]["rows_deleted_not_stored"] == 4
    assert logged["run_finished"]["rows_unchanged"] == 50

    (latest, _) = json.loads(_cli(["runs", "--json"], vars_).stdout)
    counts = {k: latest[k] for k in latest if k.startswith("rows_")}
    assert counts | {"rows_degraded": None, "rows_future_stamped": None} == {
        "rows_read": 60,
        "rows_inserted": 0,
        "rows_updated": 2,
        "rows_unchanged": 50,
        "rows_skipped": 3,
        "rows_deleted": 1,
        "rows_deleted_not_stored": 4,
        "rows_held": 0,  # one delete of 52 live rows: far below the delete guard's limit
        "rows_degraded": None,
        "rows_future_stamped": None,
    }
    parts = (
        "rows_inserted",
        "rows_updated",
        "rows_unchanged",
        "rows_skipped",
        "rows_deleted",
        "rows_deleted_not_stored",
        "rows_held",
    )
    assert sum(latest[k] for k in parts) == latest["rows_read"]

    sheet = dict(_sheet(_cli(["status"], vars_).stdout))
    assert sheet["rows written (latest run)"] == "3"  # 2 updated + 1 soft-deleted
    assert sheet["rows skipped (latest run)"] == "3"
    assert sheet["latest run's rows"] == "60 read: 0 inserted, 2 updated, 50 unchanged, 3 skipped,"
    assert sheet[""] == "1 soft-deleted, 4 deleted in the source and never stored"
    assert sheet["opportunities in Postgres"].startswith("52 live, 1 soft-deleted, ")
    assert sheet["deletes held"] == "-"

    table = _cli(["runs"], vars_).stdout.splitlines()
    assert table[0].split() == ["started", "(UTC)", "run", "trigger", "status", "pages", "read", "written", "skipped", "error"]
    assert table[1].split()[2:] == [latest["run_id"][:8], "full_resync", "success", "1", "60", "3", "3", "-"]
    assert table[2].split()[3:8] == ["tick", "success", "1", "60", "53"]


def _sheet(text):
    """The status sheet's (label, value) pairs; labels and values are two or more spaces apart."""
    return [
        tuple(re.split(r"\s{2,}", line.strip(), maxsplit=1)) if line[0] != " " else ("", line.strip())
        for line in text.splitlines()
    ]


def test_tables_fit_the_terminal_and_wide_shows_every_column(env):
    env.seed(generate(200, seed=59))  # messy: long reasons and values among the rejections
    vars_ = env.env_vars()
    assert _cli(["run", "--until-done"], vars_).returncode == 0
    env.query("UPDATE sync_runs SET error = %s", ("x" * 300,))
    for command in ("runs", "rejections"):
        every = list(json.loads(_cli([command, "--json"], vars_).stdout)[0])
        piped = _cli([command], vars_).stdout.splitlines()
        assert max(map(len, piped)) <= 100, command  # piped: 100 columns unless COLUMNS says otherwise
        assert all(line == line.rstrip() for line in piped)
        narrow = _cli([command], {**vars_, "COLUMNS": "72"}).stdout.splitlines()
        assert max(map(len, narrow)) <= 72, command
        assert len(narrow) == len(piped), "cut, never wrapped"
        wide = _cli([command, "--wide"], vars_).stdout.splitlines()
        assert wide[0].split() == every  # every --json field, in order
        assert len(wide) == len(piped)
    runs = _cli(["runs"], vars_).stdout.splitlines()
    assert runs[1].endswith("x…")
    assert "x" * 59 + "…" in _cli(["runs", "--wide"], vars_).stdout  # --wide still caps one cell at 60


def test_json_keeps_one_type_per_field(env):
    env.seed(generate(20, seed=60, messy=False))
    vars_ = env.env_vars()
    assert _cli(["migrate"], vars_).returncode == 0
    assert json.loads(_cli(["status", "--json"], vars_).stdout)["in_flight"] is False  # no lease at all
    env.query("UPDATE sync_status SET lease_expires_at = now() + interval '1 hour'")
    assert json.loads(_cli(["status", "--json"], vars_).stdout)["in_flight"] is True
    env.query("UPDATE sync_status SET lease_expires_at = now() - interval '1 hour'")
    assert json.loads(_cli(["status", "--json"], vars_).stdout)["in_flight"] is False
    assert re.search(r"^invocation in flight now +no$", _cli(["status"], vars_).stdout, re.MULTILINE)


def test_rejections_takes_the_short_run_id_that_runs_shows(env):
    data = generate(30, seed=61, messy=False)
    data.rows("opportunity")[0]["name"] = None
    env.seed(data)
    vars_ = env.env_vars()
    assert _cli(["run", "--until-done"], vars_).returncode == 0
    (run,) = json.loads(_cli(["runs", "--json"], vars_).stdout)
    by_prefix = json.loads(_cli(["rejections", "--json", "--run", run["run_id"][:8]], vars_).stdout)
    assert [r["reason"] for r in by_prefix] == ["missing_name"]
    assert json.loads(_cli(["rejections", "--json", "--run", run["run_id"]], vars_).stdout) == by_prefix
    unknown = _cli(["rejections", "--run", "ffffffff"], vars_)
    assert unknown.returncode == 2
    assert "no run id starts with 'ffffffff'" in unknown.stderr
    assert _cli(["rejections", "--run", "zz"], vars_).returncode == 2


def test_import_main_does_not_load_the_cli_libraries():
    probe = "import sys, main; print(sorted(m for m in sys.modules if m.startswith(('rich', 'sync.ops.cli', 'sync.ops.tables'))))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("width", "value", "shown"),
    [
        # rich markup in a source value is shown as typed, never interpreted
        (100, "[bold red]Acme[/bold red] :smile:", "[bold red]Acme[/bold red] :smile:"),
        # a long value is cut to the width left, with an ellipsis, on one line
        (30, "a" * 80, "a" * 21 + "…"),
        # control characters are escaped before the cut, so the width counts what is shown
        (100, "x\x1b[2Jy", "x\\x1b[2Jy"),
    ],
)
def test_table_cells_are_literal_cut_and_escaped(width, value, shown):
    import io

    from sync.ops import tables

    out = io.StringIO()
    columns = [tables.Column("k", "key"), tables.Column("v", "value", flex=True)]
    tables.render([{"k": "id-1", "v": value}], columns, out, width=width)
    _header, row = out.getvalue().splitlines()
    assert row == f"id-1  {shown}"
    assert len(row) <= width
