"""Versioned, idempotent schema migrations.

Each ``migrations/NNNN_name.sql`` file runs once, in its own transaction, recorded in
``schema_migrations``. A transaction-scoped advisory lock serialises concurrent cold starts,
so two instances booting together cannot both apply version N.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

from sync.db import Connection

log = logging.getLogger(__name__)

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant works; it only has to be the same for every instance of this program.
_MIGRATION_LOCK_KEY = 7_342_001


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    """All migration files shipped with the package, in version order."""
    found: list[Migration] = []
    for entry in resources.files("sync.migrations").iterdir():
        match = _FILE_RE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    return sorted(found, key=lambda m: m.version)


def migrate(conn: Connection) -> list[int]:
    """Apply pending migrations; returns the versions applied by this call."""
    applied_now: list[int] = []
    cur = conn.cursor()
    cur.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    conn.commit()
    for migration in available():
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
        cur.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,))
        if cur.fetchone() is not None:
            conn.rollback()
            continue
        cur.execute(migration.sql)
        cur.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
            (migration.version, migration.name),
        )
        conn.commit()
        applied_now.append(migration.version)
        log.info("applied migration %04d_%s", migration.version, migration.name)
    return applied_now


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
