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
- **The runtime login only checks.** A login that must not alter the schema (the function's,
  ``SYNC_AUTO_MIGRATE=false``) calls :func:`require_current`: the same one read, and a retryable
  :class:`SchemaBehindError` while migrations this release needs are missing, so Pub/Sub brings
  the message back once the owner has applied them (the migration job ``terraform apply`` runs).
- **The owner grants the runtime login its data** after migrating, when asked
  (``upgrade(..., grant_to=ROLE)``, ``python -m sync migrate --grant-to ROLE``), in the same
  transaction as the check that the runtime login holds nothing more (:mod:`sync.postgres.grants`).

Migrations are applied by version, not by position: a gap in the numbers (0006 before 0004) is
fine, and a lower number that arrives later is applied when it arrives.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from importlib import resources

from pg8000.exceptions import DatabaseError, InterfaceError

from sync.core.errors import INSUFFICIENT_PRIVILEGE, UNDEFINED_TABLE, PermanentError, RetryableError, sqlstate_of
from sync.postgres import grants
from sync.postgres.db import Connection, Cursor, one_row

log = logging.getLogger(__name__)

# The one sync_status row this program keeps (its key); seeded here, read and written by sync/run/state.py.
ENTITY = "opportunities"

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant works; it only has to be the same for every instance of this program.
_MIGRATION_LOCK_KEY = 7_342_001

_STATE_SQL = (
    "SELECT (SELECT coalesce(array_agg(version), '{}') FROM schema_migrations),"
    " EXISTS (SELECT 1 FROM sync_status WHERE entity_type = %s)"
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


class SchemaBehindError(RetryableError):
    """Migrations this release needs are missing, and this login does not apply them."""

    def __init__(self, pending: list[int]) -> None:
        self.pending = pending
        names = ", ".join(f"{v:04d}" for v in pending)
        super().__init__(
            f"the database lacks migration(s) {names} that this release needs; the tables' owner applies them"
            " (the migration job `terraform apply` runs, or by hand `python -m sync migrate --grant-to ROLE` as the"
            " owner); retried until then"
        )


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
    # What the runtime role was granted (``grant_to``), None when not asked.
    granted: grants.Granted | None = None


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


def upgrade(conn: Connection, *, grant_to: str | None = None) -> MigrationReport:
    """Apply pending migrations, restore a missing ``sync_status`` row and, with ``grant_to``,
    grant that role the sync's data and check it holds nothing more (:mod:`sync.postgres.grants`).

    Raises:
        MigrationPermissionError: the role lacks a privilege a pending migration needs.
        grants.RuntimeRoleError: ``grant_to`` is missing, cannot be granted, or holds more.
    """
    migrations = available()
    applied, status_row = _read_state(conn)
    if status_row and {m.version for m in migrations} <= applied and grant_to is None:
        return MigrationReport()
    applied_now = [m.version for m in migrations if m.version not in applied and _apply(conn, m)]
    restored = _restore_status_row(conn)
    return MigrationReport(applied_now, restored, _grant(conn, grant_to) if grant_to else None)


def require_current(conn: Connection) -> bool:
    """For a login that does not migrate: raise :class:`SchemaBehindError` while a migration is
    missing; restore a deleted ``sync_status`` row (a row, no DDL). Returns whether it restored one."""
    applied, status_row = _read_state(conn)
    pending = [m.version for m in available() if m.version not in applied]
    if pending:
        raise SchemaBehindError(pending)
    return False if status_row else _restore_status_row(conn)


def _grant(conn: Connection, role: str) -> grants.Granted:
    cur = conn.cursor()
    try:
        # Under the migration lock: a concurrent migrator's new table is either granted here or
        # by its own run.
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
        granted = grants.grant(cur, role)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    log.info(
        "granted %s the sync's data: %d tables, %d read-only, %d sequences; it holds nothing more",
        role,
        len(granted.tables),
        len(granted.read_only),
        len(granted.sequences),
        extra={"event": "runtime_granted", "role": role},
    )
    return granted


def _read_state(conn: Connection) -> tuple[set[int], bool]:
    """The one read of an up-to-date start: applied versions and whether the status row exists."""
    cur = conn.cursor()
    try:
        cur.execute(_STATE_SQL, (ENTITY,))
        row = one_row(cur, "the schema state query")
    except DatabaseError as err:
        conn.rollback()
        if sqlstate_of(err) == UNDEFINED_TABLE:  # an empty database, or one never migrated
            return set(), False
        if sqlstate_of(err) == INSUFFICIENT_PRIVILEGE:
            raise _permission_error(conn, "read schema_migrations and sync_status", err) from err
        raise
    conn.rollback()
    return {int(v) for v in row[0]}, bool(row[1])


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
        f"table also needs the table's owner: ALTER TABLE ... OWNER TO {quoted};), or run `python -m sync migrate"
        " --grant-to ROLE` as the owner and set SYNC_AUTO_MIGRATE=false for this role"
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
