"""The main job end to end on local stand-ins: seed the BigQuery emulator, sync until done, show status.

Run through `make demo`. Uses Postgres at 127.0.0.1:5432 (or a throwaway cluster) and a
database of its own, `opportunity_sync_demo`, recreated each time.

`make demo-cloudsql` (`--cloudsql`) takes the deployed connection path instead of DATABASE_URL:
Google credentials from a service-account key file, the password from Secret Manager, the
Cloud SQL Python Connector (Admin API, ephemeral certificate) and mTLS on port 3307, all local
stand-ins (standins/cloudsql.py) in front of a throwaway Postgres that checks passwords.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from standins import bigquery as sbq  # noqa: E402
from standins.cloudsql import SECRET, CloudSql  # noqa: E402
from standins.generator import BASE_TIME, generate  # noqa: E402
from standins.postgres import Cluster, ensure_server  # noqa: E402
from sync.postgres.db import connect_url  # noqa: E402

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


@contextlib.contextmanager
def direct_database() -> Iterator[dict[str, str]]:
    """DATABASE_URL to a fresh demo database on the local server."""
    admin_url = ensure_server()
    admin = connect_url(admin_url)
    admin.autocommit = True
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{DEMO_DB}" WITH (FORCE)')
    admin.cursor().execute(f'CREATE DATABASE "{DEMO_DB}"')
    admin.close()
    yield {"DATABASE_URL": admin_url.rpartition("/")[0] + "/" + DEMO_DB}


@contextlib.contextmanager
def cloud_sql_database() -> Iterator[dict[str, str]]:
    """The deployed connection settings, against the Cloud SQL stand-ins."""
    cluster = Cluster.start(password=secrets.token_urlsafe(16))
    stack = CloudSql.start(("127.0.0.1", cluster.port))
    try:
        role, password = "opportunity_sync", secrets.token_urlsafe(16)
        admin = connect_url(cluster.url)
        admin.autocommit = True
        admin.cursor().execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        admin.cursor().execute(f'CREATE DATABASE "{DEMO_DB}" OWNER {role}')
        admin.close()
        stack.secrets.add_version(SECRET, password)
        print(
            f"Cloud SQL stand-ins: instance {stack.connection_name} at {stack.front.host}:3307 (mTLS),"
            f" Admin API {stack.admin.http.url}, Secret Manager {stack.secrets.http.url},"
            f" token endpoint {stack.oauth.token_uri}"
        )
        yield stack.env(DEMO_DB, role)
        print(
            f"\nconnection path used: {len(stack.oauth.grants)} OAuth token grants,"
            f" {len(stack.secrets.accesses)} Secret Manager reads, {len(stack.admin.issued)} ephemeral certificates,"
            f" {len(stack.front.accepted)} mTLS connections"
        )
    finally:
        stack.stop()
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cloudsql", action="store_true", help="connect through the Cloud SQL connector path (stand-ins)")
    args = parser.parse_args()
    database = cloud_sql_database() if args.cloudsql else direct_database()
    with database as connection, sbq.running_emulator(Path(tempfile.mkdtemp(prefix="bqemu-"))) as emulator:
        bq = sbq.client(emulator.endpoint)
        data = generate(ROWS, seed=2026)
        sbq.seed(bq, data, salesforce_dataset="salesforce", gong_dataset="gongio_ft")
        print(f"seeded the BigQuery emulator at {emulator.endpoint} with {ROWS} Fivetran-shaped opportunities")
        env = {
            **os.environ,
            "BIGQUERY_PROJECT": sbq.PROJECT,
            "BIGQUERY_API_ENDPOINT": emulator.endpoint,
            **connection,
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
        sync("preview", env=env)
        sync("run", "--until-done", env=env)
        sync("status", env=env)
        sync("runs", env=env)
        sync("rejections", "--limit", "5", env=env)
        print(f"\nstructured logs of these runs: {LOG}")


if __name__ == "__main__":
    main()
