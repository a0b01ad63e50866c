"""The function's login holds only what the sync needs (issue 22, section 2).

A throwaway cluster set up the way Cloud SQL sets one up: a ``cloudsqlsuperuser`` role with
CREATEROLE and CREATEDB (not a superuser), the function's user created as the Admin API creates
it (LOGIN CREATEROLE CREATEDB, member of ``cloudsqlsuperuser``), its database owned by
``cloudsqlsuperuser``, and a second database where another application keeps a table. The
function runs the deployed path (Secret Manager, the Cloud SQL connector, scram passwords) with
``SYNC_SHED_PRIVILEGES=true`` as Terraform sets it.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pg8000.dbapi
import pytest
from conftest import DATA_ONLY_GRANTS, Env, SecurePostgres, database_role, migrate_below
from functionapp import TOPIC, client, cold_start, push
from projection import expected_projection

from standins.cloudsql import CloudSql
from standins.generator import generate
from sync.postgres import db, privileges
from sync.postgres.db import connect_url
from sync.postgres.privileges import Held, shed_statements
from sync.postgres.schema import available, give_up_privileges, upgrade

SUPERUSER_GROUP = "cloudsqlsuperuser"
OTHER_SECRET = "someone else's row"


@pytest.fixture(scope="module")
def cloudsql(secure_postgres: SecurePostgres) -> Iterator[CloudSql]:
    stack = CloudSql.start(("127.0.0.1", secure_postgres.cluster.port))
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(autouse=True)
def _close_connector() -> Iterator[None]:
    yield
    db.close()


def _admin(secure: SecurePostgres, database: str = "postgres") -> Any:
    conn = connect_url(secure.url(database, "postgres", secure.cluster.password))
    conn.autocommit = True
    return conn


@dataclass(frozen=True)
class Neighbour:
    """Another application on the same instance: its own login, database and table."""

    role: str
    database: str


@pytest.fixture(scope="module")
def neighbour(secure_postgres: SecurePostgres) -> Iterator[Neighbour]:
    tag = uuid.uuid4().hex[:8]
    other = Neighbour(f"other_app_{tag}", f"other_app_{tag}")
    admin = _admin(secure_postgres)
    cur = admin.cursor()
    # Roles are cluster-wide; this cluster is this session's own, but another module may have
    # made the group already.
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (SUPERUSER_GROUP,))
    made_group = cur.fetchone() is None
    if made_group:
        cur.execute(f"CREATE ROLE {SUPERUSER_GROUP} NOLOGIN CREATEROLE CREATEDB")
    cur.execute(f'CREATE ROLE "{other.role}" LOGIN')
    cur.execute(f'CREATE DATABASE "{other.database}" OWNER "{other.role}"')
    theirs = _admin(secure_postgres, other.database)
    theirs.cursor().execute(f'SET ROLE "{other.role}"; CREATE TABLE customers (note text)')
    theirs.cursor().execute("INSERT INTO customers VALUES (%s)", (OTHER_SECRET,))
    theirs.close()
    try:
        yield other
    finally:
        cur.execute(f'DROP DATABASE IF EXISTS "{other.database}" WITH (FORCE)')
        cur.execute(f'DROP ROLE IF EXISTS "{other.role}"')
        if made_group:
            cur.execute(f"DROP ROLE IF EXISTS {SUPERUSER_GROUP}")
        admin.close()


@dataclass
class Login:
    """The function's user and database, made as the Cloud SQL Admin API makes them."""

    secure: SecurePostgres
    role: str
    password: str
    database: str
    secret: str

    def url(self, database: str | None = None) -> str:
        return self.secure.url(database or self.database, self.role, self.password)


@pytest.fixture
def login(secure_postgres: SecurePostgres, cloudsql: CloudSql, neighbour: Neighbour) -> Iterator[Login]:
    tag = uuid.uuid4().hex[:8]
    made = Login(secure_postgres, f"sync_{tag}", f"Pw-{secrets.token_hex(8)}", f"os_lp_{tag}", "")
    made.secret = f"projects/local-project/secrets/db-password-{made.role}"
    cloudsql.secrets.add_version(made.secret, made.password)
    admin = _admin(secure_postgres)
    cur = admin.cursor()
    # users.insert: a member of cloudsqlsuperuser with CREATEROLE, CREATEDB and LOGIN.
    cur.execute(f"CREATE ROLE \"{made.role}\" LOGIN PASSWORD '{made.password}' CREATEROLE CREATEDB IN ROLE {SUPERUSER_GROUP}")
    # databases.insert: owned by cloudsqlsuperuser, not by any one user.
    cur.execute(f'CREATE DATABASE "{made.database}" OWNER {SUPERUSER_GROUP}')
    try:
        yield made
    finally:
        cur.execute(f'DROP DATABASE IF EXISTS "{made.database}" WITH (FORCE)')
        cur.execute(f'REVOKE "{neighbour.role}" FROM "{made.role}"')  # in case the shed failed
        cur.execute(f'DROP ROLE IF EXISTS "{made.role}"')
        admin.close()


def _env(bq_client: Any, bq_endpoint: str, login: Login) -> Env:
    tag = uuid.uuid4().hex[:6]
    return Env(
        bq_client,
        bq_endpoint,
        login.secure.url(login.database, "postgres", login.secure.cluster.password),
        f"sf_lp_{tag}",
        f"gong_lp_{tag}",
    )


def _function(monkeypatch: Any, env: Env, cloudsql: CloudSql, login: Login) -> Any:
    settings = {
        **env.env_vars(),
        **cloudsql.env(login.database, login.role, secret=login.secret),
        "SYNC_TOPIC": TOPIC,
        "SYNC_SHED_PRIVILEGES": "true",
    }
    del settings["DATABASE_URL"]  # the deployed path: the connector, a password from Secret Manager
    return client(monkeypatch, settings)


def _sqlstate(url: str, *statements: str) -> str | None:
    """Run ``statements`` as one transaction; the SQLSTATE of the refusal, None if all ran."""
    conn = connect_url(url)
    try:
        cur = conn.cursor()
        for statement in statements:
            cur.execute(statement)
        conn.rollback()
    except pg8000.dbapi.DatabaseError as err:
        return str(err.args[0]["C"])
    finally:
        conn.close()
    return None


def _attempts(login: Login, neighbour: Neighbour) -> dict[str, str | None]:
    """What a leaked login would try; each answer is a SQLSTATE (42501 = refused) or None."""
    probe = f"probe_{uuid.uuid4().hex[:8]}"
    return {
        "create a role": _sqlstate(login.url(), f'CREATE ROLE "{probe}"'),
        "grant itself cloudsqlsuperuser": _sqlstate(login.url(), f'GRANT {SUPERUSER_GROUP} TO "{login.role}"'),
        # The way CREATEROLE reaches other applications' data on Postgres 15: join their role.
        "grant itself the other app's role": _sqlstate(login.url(), f'GRANT "{neighbour.role}" TO "{login.role}"'),
        # CREATE DATABASE cannot run in a transaction block; autocommit below.
        "create a database": _autocommit_sqlstate(login.url(), f'CREATE DATABASE "{probe}"'),
        "read the other table": _sqlstate(login.url(neighbour.database), "SELECT note FROM customers"),
    }


def _autocommit_sqlstate(url: str, statement: str) -> str | None:
    conn = connect_url(url)
    conn.autocommit = True
    try:
        conn.cursor().execute(statement)
    except pg8000.dbapi.DatabaseError as err:
        return str(err.args[0]["C"])
    finally:
        conn.close()
    return None


def _powers(secure: SecurePostgres, role: str) -> tuple[bool, bool, list[str]]:
    admin = _admin(secure)
    cur = admin.cursor()
    cur.execute("SELECT rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = %s", (role,))
    createrole, createdb = cur.fetchone()
    cur.execute(
        "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member"
        " WHERE u.rolname = %s ORDER BY 1",
        (role,),
    )
    groups = [r[0] for r in cur.fetchall()]
    admin.close()
    return bool(createrole), bool(createdb), groups


def _events(records: list[logging.LogRecord], event: str) -> list[logging.LogRecord]:
    return [r for r in records if getattr(r, "event", None) == event]


def test_after_the_first_cold_start_the_login_cannot_reach_beyond_its_own_tables(
    bq_client, bq_endpoint, cloudsql, login, neighbour, monkeypatch, caplog
):
    # As created, the login is as powerful as Cloud SQL makes it: all but reading works, and
    # reading is one GRANT away.
    assert _powers(login.secure, login.role) == (True, True, [SUPERUSER_GROUP])
    assert _sqlstate(login.url(), f'CREATE ROLE "probe_{uuid.uuid4().hex[:6]}"') is None
    assert _sqlstate(login.url(), f'GRANT "{neighbour.role}" TO "{login.role}"') is None

    env = _env(bq_client, bq_endpoint, login)
    data = generate(40, seed=221)
    env.seed(data)
    app = _function(monkeypatch, env, cloudsql, login)
    caplog.set_level(logging.INFO)
    assert push(app, {"type": "tick"}, message_id="t1").status_code == 200

    assert env.projection() == expected_projection(data)
    assert env.query("SELECT status FROM sync_status") == [("success",)]
    (shed,) = _events(caplog.records, "privileges_shed")
    assert sorted(shed.shed) == sorted(["CREATEROLE", "CREATEDB", f"membership of {SUPERUSER_GROUP}"])
    assert _powers(login.secure, login.role) == (False, False, [])
    assert _attempts(login, neighbour) == dict.fromkeys(_attempts(login, neighbour), "42501")
    # It still owns what it made.
    assert env.query("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'") == [(login.role,)]

    # The platform (or a person) gives the membership back: the next cold start sheds it again,
    # acting as cloudsqlsuperuser because the login itself no longer has CREATEROLE.
    admin = _admin(login.secure)
    admin.cursor().execute(f'GRANT {SUPERUSER_GROUP} TO "{login.role}"')
    admin.close()
    cold_start(monkeypatch)
    caplog.clear()
    env.append("opportunity", [{**data.rows("opportunity")[0], "id": "006AFTERSHED", "name": "After the shed"}])
    assert push(app, {"type": "tick"}, message_id="t2").status_code == 200
    (again,) = _events(caplog.records, "privileges_shed")
    assert again.shed == [f"membership of {SUPERUSER_GROUP}"]
    assert _powers(login.secure, login.role) == (False, False, [])
    assert "006AFTERSHED" in env.live_ids()  # temp staging tables and writes work unprivileged

    # Nothing left to shed: a warm start logs nothing about it.
    cold_start(monkeypatch)
    caplog.clear()
    assert push(app, {"type": "tick"}, message_id="t3").status_code == 200
    assert _events(caplog.records, "privileges_shed") == _events(caplog.records, "privileges_not_shed") == []


def test_migrations_after_the_shed_still_apply(bq_client, bq_endpoint, cloudsql, login, neighbour, monkeypatch, caplog):
    # An earlier release, run by the still-privileged login, applied 0001; then the login shed
    # its powers (what a cold start of this release does after migrating).
    migrate_below(login.url(), 2)
    conn = connect_url(login.url())
    shed, still_held = give_up_privileges(conn)
    conn.close()
    assert (sorted(shed), still_held) == (sorted(["CREATEROLE", "CREATEDB", f"membership of {SUPERUSER_GROUP}"]), [])

    # The real later migrations (0002 creates tables and alters sync_status, 0003 alters and
    # creates, and every one after) now run as the unprivileged login, at the function's cold start.
    env = _env(bq_client, bq_endpoint, login)
    data = generate(30, seed=222)
    env.seed(data)
    app = _function(monkeypatch, env, cloudsql, login)
    caplog.set_level(logging.INFO)
    assert push(app, {"type": "tick"}).status_code == 200
    (migrated,) = _events(caplog.records, "migrated")
    assert migrated.versions == [m.version for m in available() if m.version >= 2]
    assert env.projection() == expected_projection(data)
    assert {r[0] for r in env.query("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")} == {login.role}
    assert _attempts(login, neighbour) == dict.fromkeys(_attempts(login, neighbour), "42501")


def test_without_the_setting_nobody_is_stripped(database_url):
    # An administrator's `python -m sync migrate` (no SYNC_SHED_PRIVILEGES) must keep its powers.
    # The role could shed both (CREATEROLE lets it), so only the missing setting keeps them.
    with database_role(database_url, (*DATA_ONLY_GRANTS, "ALTER ROLE {role} CREATEROLE CREATEDB")) as url:
        conn = connect_url(url)
        report = upgrade(conn)
        assert (report.shed, report.still_held) == ([], [])
        cur = conn.cursor()
        cur.execute("SELECT rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user")
        assert cur.fetchone() == [True, True]
        conn.close()


def test_a_refused_shed_is_logged_and_the_sync_goes_on(database_url, caplog):
    # CREATEDB without CREATEROLE: Postgres refuses the role's ALTER ROLE on itself (42501).
    with database_role(database_url, ("ALTER ROLE {role} CREATEDB",)) as url:
        conn = connect_url(url)
        caplog.set_level(logging.INFO)
        shed, still_held = give_up_privileges(conn)
        conn.close()
    assert (shed, still_held) == ([], ["CREATEDB"])
    (refused,) = _events(caplog.records, "privileges_not_shed")
    assert refused.levelno == logging.ERROR
    assert "42501" in refused.getMessage()
    assert "NOCREATEDB" in refused.getMessage()


# What each kind of login runs, in order (pure: no database).
@pytest.mark.parametrize(
    ("found", "expected_tail"),
    [
        # As the Admin API makes it: CREATEROLE lets it revoke the membership itself, and the
        # NOCREATEROLE comes last because the REVOKE needs it.
        (
            Held(("CREATEROLE", "CREATEDB"), ("cloudsqlsuperuser",), ("cloudsqlsuperuser",)),
            ['REVOKE "cloudsqlsuperuser" FROM "app"', 'ALTER ROLE "app" NOCREATEROLE NOCREATEDB'],
        ),
        # Membership given back without the attribute: act as the group to leave it.
        (
            Held((), ("cloudsqlsuperuser",), ("cloudsqlsuperuser",)),
            ['SET LOCAL ROLE "cloudsqlsuperuser"', 'REVOKE "cloudsqlsuperuser" FROM "app"', "RESET ROLE"],
        ),
        # A predefined role that reads every table, granted to a login with CREATEROLE.
        (
            Held(("CREATEROLE",), ("pg_read_all_data",)),
            ['REVOKE "pg_read_all_data" FROM "app"', 'ALTER ROLE "app" NOCREATEROLE NOCREATEDB'],
        ),
    ],
)
def test_shed_statements(found: Held, expected_tail: list[str]) -> None:
    statements = shed_statements("app", 'db "x"', found)
    # The grants later migrations need come first, while the membership still allows them.
    assert statements[:2] == [
        'GRANT CONNECT, TEMPORARY ON DATABASE "db ""x""" TO "app"',
        'GRANT USAGE, CREATE ON SCHEMA public TO "app"',
    ]
    assert statements[2:] == expected_tail


def test_held_reads_nothing_for_a_superuser(database_url):
    conn = connect_url(database_url)  # the machine's postgres superuser
    assert not privileges.held(conn.cursor())
    conn.close()
