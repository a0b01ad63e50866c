"""Versioned, idempotent schema migrations.

Each ``migrations/NNNN_name.sql`` file runs once, in its own transaction, recorded in
``schema_migrations``.

- **Up to date costs one read.** Every cold start calls :func:`migrate`; when nothing is
  pending it runs a single SELECT and no DDL, so a role with data access only (tables
  created by an admin) starts cleanly.
- **The lock comes before any DDL.** Otherwise concurrent first starts race on
  ``CREATE TABLE IF NOT EXISTS schema_migrations`` and all but one fail with 23505 on the
  catalog. A transaction-scoped advisory lock serialises them; it works through poolers.
- **A permission error says what to do**: the grants to run, or ``SYNC_AUTO_MIGRATE=false``
  with migrations applied by an admin.
- **The ``sync_status`` row is restored** when someone deleted it: without it every run
  looks like one already in flight.
- **The login sheds its cluster-wide powers** when asked (``shed_privileges``; the function's
  ``SYNC_SHED_PRIVILEGES=true``): after the migrations, under the same lock, in its own
  transaction (:mod:`sync.postgres.privileges`). The same single read tells whether any are held, so a
  start with nothing pending and nothing to shed still costs one SELECT; a power given back
  later (by hand, or by the platform) is shed again at the next cold start. Migrations are
  applied by version, not by position: a gap in the numbers (0006 before 0004) is fine, and a
  lower number that arrives later is applied when it arrives.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from importlib import resources

from pg8000.exceptions import DatabaseError, InterfaceError

from sync.core.errors import INSUFFICIENT_PRIVILEGE, UNDEFINED_TABLE, PermanentError, sqlstate_of
from sync.postgres import privileges
from sync.postgres.db import Connection, Cursor, one_row

log = logging.getLogger(__name__)

# The one sync_status row this program keeps (its key); seeded here, read and written by sync/run/state.py.
ENTITY = "opportunities"

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant works; it only has to be the same for every instance of this program.
_MIGRATION_LOCK_KEY = 7_342_001

_STATE_SQL = (
    "SELECT (SELECT coalesce(array_agg(version), '{}') FROM schema_migrations),"
    " EXISTS (SELECT 1 FROM sync_status WHERE entity_type = %s),"
    f" {privileges.ANY_HELD_SQL}"
)
_CREATE_LEDGER = (
    "CREATE TABLE schema_migrations ("
    " version integer PRIMARY KEY, name text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())"
)


class MigrationPermissionError(PermanentError):
    """The database role may not apply a pending migration (or read the ledger)."""

    def __init__(self, message: str, role: str | None) -> None:
        self.role = role
        super().__init__(message)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@dataclass(frozen=True)
class MigrationReport:
    """What :func:`upgrade` found and did."""

    applied: list[int] = field(default_factory=list)
    restored_status_row: bool = False
    # What the login gave up (``privileges.Held.describe()``), and what it still holds when
    # shedding was refused.
    shed: list[str] = field(default_factory=list)
    still_held: list[str] = field(default_factory=list)


def available() -> list[Migration]:
    """All migration files shipped with the package, in version order."""
    found: list[Migration] = []
    for entry in resources.files("sync.postgres.migrations").iterdir():
        match = _FILE_RE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    return sorted(found, key=lambda m: m.version)


def migrate(conn: Connection) -> list[int]:
    """Apply pending migrations; returns the versions applied by this call."""
    return upgrade(conn).applied


def upgrade(conn: Connection, *, shed_privileges: bool = False) -> MigrationReport:
    """Apply pending migrations, restore a missing ``sync_status`` row, and, with
    ``shed_privileges``, give up the login's cluster-wide powers (:mod:`sync.postgres.privileges`).

    Raises:
        MigrationPermissionError: the role lacks a privilege a pending migration needs.
    """
    migrations = available()
    applied, status_row, powers = _read_state(conn)
    must_shed = shed_privileges and powers
    if status_row and {m.version for m in migrations} <= applied and not must_shed:
        return MigrationReport()
    applied_now = [m.version for m in migrations if m.version not in applied and _apply(conn, m)]
    restored = _restore_status_row(conn)
    shed, still_held = give_up_privileges(conn) if must_shed else ([], [])
    return MigrationReport(applied_now, restored, shed, still_held)


def _read_state(conn: Connection) -> tuple[set[int], bool, bool]:
    """The one read of an up-to-date start: applied versions, whether the status row exists,
    and whether the login holds powers beyond its own objects."""
    cur = conn.cursor()
    try:
        cur.execute(_STATE_SQL, (ENTITY,))
        row = one_row(cur, "the schema state query")
    except DatabaseError as err:
        conn.rollback()
        if sqlstate_of(err) == UNDEFINED_TABLE:  # an empty database, or one never migrated
            return set(), False, True  # shedding re-reads what is held
        if sqlstate_of(err) == INSUFFICIENT_PRIVILEGE:
            raise _permission_error(conn, "read schema_migrations and sync_status", err) from err
        raise
    conn.rollback()
    return {int(v) for v in row[0]}, bool(row[1]), bool(row[2])


def _apply(conn: Connection, migration: Migration) -> bool:
    """Apply one migration under the lock unless another instance got there first."""
    cur = conn.cursor()
    try:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
        _ensure_ledger(cur)
        cur.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,))
        if cur.fetchone() is not None:
            conn.rollback()
            return False
        cur.execute(migration.sql)
        cur.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (migration.version, migration.name))
        conn.commit()
    except DatabaseError as err:
        conn.rollback()
        if sqlstate_of(err) == INSUFFICIENT_PRIVILEGE:
            raise _permission_error(conn, f"apply migration {migration.version:04d}_{migration.name}", err) from err
        raise
    log.info("applied migration %04d_%s", migration.version, migration.name)
    return True


def give_up_privileges(conn: Connection) -> tuple[list[str], list[str]]:
    """Shed the login's powers under the migration lock; (what was shed, what is still held).

    A refusal is logged, not raised: the sync itself needs none of these powers, so it goes on,
    and the next cold start tries again.
    """
    cur = conn.cursor()
    try:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
        found = privileges.shed(cur)
        left = privileges.held(cur)
        conn.commit()
    except DatabaseError as err:
        conn.rollback()
        left = privileges.held(conn.cursor())
        conn.rollback()
        log.error(  # noqa: TRY400 - the SQLSTATE and message say it all; no traceback wanted
            "could not give up %s (SQLSTATE %s: %s); the sync goes on, the next cold start tries again. As an"
            " administrator: ALTER ROLE ... NOCREATEROLE NOCREATEDB; REVOKE cloudsqlsuperuser FROM ...",
            ", ".join(left.describe()) or "cluster-wide powers",
            sqlstate_of(err),
            _message(err),
            extra={"event": "privileges_not_shed", "still_held": left.describe()},
        )
        return [], left.describe()
    if found:
        log.info(
            "the database login gave up %s; it keeps its own tables and CREATE on schema public",
            ", ".join(found.describe()),
            extra={"event": "privileges_shed", "shed": found.describe(), "still_held": left.describe()},
        )
    if left:
        log.error(
            "the database login still holds %s after shedding; as an administrator: ALTER ROLE ... NOCREATEROLE"
            " NOCREATEDB; REVOKE ... FROM ...",
            ", ".join(left.describe()),
            extra={"event": "privileges_not_shed", "still_held": left.describe()},
        )
    return found.describe(), left.describe()


def _message(err: DatabaseError) -> str:
    fields = err.args[0] if err.args and isinstance(err.args[0], dict) else {}
    return str(fields.get("M", err))


def _ensure_ledger(cur: Cursor) -> None:
    # Checked, not "IF NOT EXISTS": that form still needs CREATE on the schema. Under the lock
    # the check cannot race another migrator.
    cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    exists = cur.fetchone()
    if not (exists and exists[0]):
        cur.execute(_CREATE_LEDGER)


def _restore_status_row(conn: Connection) -> bool:
    cur = conn.cursor()
    cur.execute(
        "INSERT INTO sync_status (entity_type) VALUES (%s) ON CONFLICT (entity_type) DO NOTHING RETURNING 1",
        (ENTITY,),
    )
    restored = cur.fetchone() is not None
    conn.commit()
    if restored:
        log.warning(
            "sync_status had no %r row (deleted by hand?); restored it: the next run starts from the beginning of the source",
            ENTITY,
            extra={"event": "status_row_restored"},
        )
    return restored


def _permission_error(conn: Connection, action: str, err: DatabaseError) -> MigrationPermissionError:
    role = _current_user(conn)
    quoted = '"' + (role or "ROLE").replace('"', '""') + '"'
    fields = err.args[0] if err.args and isinstance(err.args[0], dict) else {}
    msg = (
        f"role {role!r} cannot {action}: {fields.get('M', 'permission denied')} (SQLSTATE {INSUFFICIENT_PRIVILEGE})."
        " Either let this role "
        f"migrate (as the database owner: GRANT USAGE, CREATE ON SCHEMA public TO {quoted}; a migration that alters a "
        f"table also needs the table's owner: ALTER TABLE ... OWNER TO {quoted};), or run `python -m sync migrate` as "
        "the owner and set SYNC_AUTO_MIGRATE=false for this role"
    )
    return MigrationPermissionError(msg, role)


def _current_user(conn: Connection) -> str | None:
    try:
        cur = conn.cursor()
        cur.execute("SELECT current_user")
        row = cur.fetchone()
        conn.rollback()
    except (DatabaseError, InterfaceError):
        return None  # the name only decorates the message
    return str(row[0]) if row else None


def current_version(conn: Connection) -> int:
    """Highest applied version, 0 for an empty database."""
    cur = conn.cursor()
    cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    row = cur.fetchone()
    if not row or not row[0]:
        conn.rollback()
        return 0
    cur.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
    version = cur.fetchone()
    conn.rollback()
    return int(version[0]) if version else 0
