"""The main job end to end on local stand-ins: seed the BigQuery emulator, sync until done, show status.

Run through `make demo`. Uses Postgres at 127.0.0.1:5432 (or a throwaway cluster) and a
database of its own, `opportunity_sync_demo`, recreated each time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from standins import bigquery as sbq  # noqa: E402
from standins.generator import BASE_TIME, generate  # noqa: E402
from standins.postgres import ensure_server  # noqa: E402
from sync.db import connect_url  # noqa: E402

DEMO_DB = "opportunity_sync_demo"
ROWS = int(os.environ.get("DEMO_ROWS", "5000"))


LOG = Path(tempfile.gettempdir()) / "opportunity-sync-demo.log"


def sync(*args: str, env: dict[str, str]) -> None:
    print(f"\n$ python -m sync {' '.join(args)}", flush=True)
    # The JSON log lines (one per page, per skipped row, per degraded reason) go to a file.
    with LOG.open("a") as log:
        result = subprocess.run([sys.executable, "-m", "sync", *args], cwd=ROOT, env=env, stderr=log, check=False)
    if result.returncode != 0:
        raise SystemExit(f"python -m sync {' '.join(args)} failed with exit code {result.returncode}")


def main() -> None:
    admin_url = ensure_server()
    admin = connect_url(admin_url)
    admin.autocommit = True
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{DEMO_DB}" WITH (FORCE)')
    admin.cursor().execute(f'CREATE DATABASE "{DEMO_DB}"')
    admin.close()
    database_url = admin_url.rpartition("/")[0] + "/" + DEMO_DB

    with sbq.running_emulator(Path(tempfile.mkdtemp(prefix="bqemu-"))) as emulator:
        bq = sbq.client(emulator.endpoint)
        data = generate(ROWS, seed=2026)
        sbq.seed(bq, data, salesforce_dataset="salesforce", gong_dataset="gongio_ft")
        print(f"seeded the BigQuery emulator at {emulator.endpoint} with {ROWS} Fivetran-shaped opportunities")
        env = {
            **os.environ,
            "BIGQUERY_PROJECT": sbq.PROJECT,
            "BIGQUERY_API_ENDPOINT": emulator.endpoint,
            "DATABASE_URL": database_url,
            "SYNC_PAGE_SIZE": "1000",
            "LOG_LEVEL": "INFO",
        }
        LOG.unlink(missing_ok=True)
        sync("migrate", env=env)
        sync("run", "--until-done", env=env)

        account = data.rows("account")[0]
        later = (BASE_TIME.replace(day=2)).isoformat()
        bq.query(
            f"UPDATE `{sbq.PROJECT}`.`salesforce`.`account` SET name = 'Renamed Holdings', _fivetran_synced = '{later}'"
            f" WHERE id = '{account['id']}'"
        ).result()
        print(
            f"\nrenamed account {account['id']} in the source; the next run re-reads the lookback window"
            " and writes only the opportunities that show the new name"
        )
        sync("run", "--until-done", env=env)
        sync("status", env=env)
        sync("runs", env=env)
        sync("rejections", "--limit", "5", env=env)
        print(f"\nstructured logs of these runs: {LOG}")


if __name__ == "__main__":
    main()
