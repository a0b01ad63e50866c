"""The runtime login's data access, granted by the tables' owner, and the check that it holds no more.

Two logins share the sync's database. The **owner** applies the migrations and so owns every
table (``python -m sync migrate --grant-to RUNTIME``; in a deployment, the Cloud Run job that
``terraform apply`` runs and waits for). The **runtime** login, the function's, only reads and
writes rows. After migrating, the owner:

1. grants the runtime role ``SELECT, INSERT, UPDATE, DELETE`` on each table it owns in ``public``
   (only ``SELECT`` on ``schema_migrations`` and on views) and ``USAGE, SELECT`` on its
   sequences. Grants are idempotent and name every relation that exists now, so the tables a later
   migration adds are granted the next time the job runs. They share one transaction with the
   check below: a refused grant or a failed check leaves the previous grants as they were;
2. checks that the runtime role holds nothing beyond its data: none of ``SUPERUSER``,
   ``CREATEROLE``, ``CREATEDB``, ``REPLICATION``, ``BYPASSRLS`` itself, no membership (which
   would let it ``SET ROLE`` to, or inherit from) of a role that has one, is ``cloudsqlsuperuser``
   or is a predefined ``pg_*`` role such as ``pg_read_all_data`` (which reads every database),
   and no database of its own. A power found raises :class:`RuntimeRoleError`, so the job fails
   and the apply with it.

The check rather than a repair: on Postgres 16 and later the owner could not take a membership
away (revoking needs ``ADMIN OPTION`` on the granted role), and the runtime role's memberships are
whoever created it to decide (Cloud SQL makes an IAM login a member of
``cloudsqliamserviceaccount`` only).

Not granted: ``TRUNCATE`` (the sync deletes with ``DELETE``), DDL of any kind. ``CONNECT`` and
``TEMPORARY`` on the database (the staging tables are temporary) come from ``PUBLIC``, which has
them unless an administrator revoked them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pg8000.exceptions import DatabaseError

from sync.core.errors import PermanentError
from sync.postgres.db import Cursor

_LEDGER = "schema_migrations"

# Every relation in public with its kind; whether the current login may grant on it (owns it, or
# is a member of its owner).
_RELATIONS_SQL = (
    "SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner), pg_has_role(c.relowner, 'USAGE')"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S') ORDER BY c.relname"
)

# A role that can create roles or databases, bypass permissions, or read or write beyond its grants.
_POWERFUL = (
    "(g.rolsuper OR g.rolcreaterole OR g.rolcreatedb OR g.rolreplication OR g.rolbypassrls"
    " OR g.rolname = 'cloudsqlsuperuser' OR starts_with(g.rolname, 'pg_'))"
)
# One row per power a role holds; bound as (role, role, role, role). 'MEMBER' counts every
# membership, direct or indirect: from Postgres 16 one may be granted without SET (no SET ROLE)
# and still with INHERIT (the role's privileges, such as pg_read_all_data's, come with it).
_POWERS_SQL = (
    "SELECT 'attribute', a.name FROM pg_roles r, LATERAL (VALUES ('SUPERUSER', r.rolsuper),"
    " ('CREATEROLE', r.rolcreaterole), ('CREATEDB', r.rolcreatedb), ('REPLICATION', r.rolreplication),"
    " ('BYPASSRLS', r.rolbypassrls)) AS a(name, held) WHERE r.rolname = %s AND a.held"
    " UNION ALL SELECT 'role', g.rolname FROM pg_roles g"
    f" WHERE g.rolname <> %s AND {_POWERFUL} AND pg_has_role(%s, g.oid, 'MEMBER')"
    " UNION ALL SELECT 'database', d.datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba"
    " WHERE r.rolname = %s"
)


class RuntimeRoleError(PermanentError):
    """The runtime role is missing, cannot be granted the tables, or holds more than its data."""

    def __init__(self, message: str, role: str, powers: tuple[str, ...] = ()) -> None:
        self.role = role
        self.powers = powers
        super().__init__(message)


@dataclass(frozen=True)
class Granted:
    """What :func:`grant` gave the runtime role."""

    role: str
    tables: tuple[str, ...]
    read_only: tuple[str, ...]
    sequences: tuple[str, ...]


def quote_ident(name: str) -> str:
    """A Postgres identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def grant(cur: Cursor, role: str) -> Granted:
    """Grant ``role`` the sync's data, inside the caller's transaction, then :func:`check` it."""
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    if cur.fetchone() is None:
        msg = (
            f"no Postgres role {role!r} to grant the sync's tables to: create the runtime login first"
            " (Terraform: google_sql_user.runtime)"
        )
        raise RuntimeRoleError(msg, role)
    cur.execute(_RELATIONS_SQL)
    relations = [(str(name), str(kind), str(owner), bool(mine)) for name, kind, owner, mine in cur.fetchall()]
    foreign = sorted({owner for _, _, owner, mine in relations if not mine})
    if foreign:
        cur.execute("SELECT current_user")
        me = str((cur.fetchone() or ["?"])[0])
        msg = (
            f"tables in public belong to {', '.join(foreign)}, not to the login that migrates ({me}), which therefore"
            f" cannot grant them to {role}. Once, as an administrator: "
            + " ".join(f"REASSIGN OWNED BY {quote_ident(o)} TO {quote_ident(me)};" for o in foreign)
        )
        raise RuntimeRoleError(msg, role)
    tables = tuple(n for n, k, _, _ in relations if k in {"r", "p"} and n != _LEDGER)
    read_only = tuple(n for n, k, _, _ in relations if k in {"v", "m"} or n == _LEDGER)
    sequences = tuple(n for n, k, _, _ in relations if k == "S")
    to = quote_ident(role)
    for privileges, names, kind in (
        ("SELECT, INSERT, UPDATE, DELETE", tables, "TABLE"),
        ("SELECT", read_only, "TABLE"),
        ("USAGE, SELECT", sequences, "SEQUENCE"),
    ):
        if names:
            cur.execute(f"GRANT {privileges} ON {kind} {', '.join(map(quote_ident, names))} TO {to}")
    check(cur, role)
    return Granted(role, tables, read_only, sequences)


def powers(cur: Cursor, role: str) -> tuple[str, ...]:
    """What ``role`` holds beyond its data, described for a person (empty: nothing)."""
    cur.execute(_POWERS_SQL, (role, role, role, role))
    described = {"attribute": "{}", "role": "member of {}", "database": "owns database {}"}
    return tuple(described[str(kind)].format(name) for kind, name in cur.fetchall())


def check(cur: Cursor, role: str) -> None:
    """Raise :class:`RuntimeRoleError` when ``role`` holds any power (see the module docstring)."""
    try:
        found = powers(cur, role)
    except DatabaseError as err:
        msg = f"could not read what role {role!r} holds: {err}"
        raise RuntimeRoleError(msg, role) from err
    if found:
        msg = (
            f"the runtime role {role!r} holds more than its data: {', '.join(found)}. It must be a login of its own"
            " (Terraform: the function's IAM database login), never the owner or an administrator; take the powers"
            " away as an administrator (ALTER ROLE ... NOCREATEROLE NOCREATEDB; REVOKE ... FROM ...) and run the"
            " migration again"
        )
        raise RuntimeRoleError(msg, role, found)
