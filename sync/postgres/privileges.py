"""The function's login gives up the cluster-wide powers Cloud SQL hands it.

A built-in user created through the Cloud SQL Admin API (``db_auth_mode = "password"``, the
default) has the ``CREATEROLE`` and ``CREATEDB`` attributes and is a member of
``cloudsqlsuperuser``, because the API creates every user that way. The sync needs none of
it once its tables exist: it owns them, and later migrations only create and alter objects in
its own schema. So, after the migrations, the login:

1. grants itself ``CONNECT, TEMPORARY`` on its database and ``USAGE, CREATE`` on ``public``.
   On Postgres 15 ``public`` is writable only by the database owner, which on Cloud SQL is
   ``cloudsqlsuperuser``; these grants are made through that membership (the owner is
   recorded as grantor), so they outlive it and later migrations can still create tables;
2. leaves ``cloudsqlsuperuser``, every predefined ``pg_*`` role and every role that can create
   roles or databases (``REVOKE ... FROM`` itself);
3. drops its own ``CREATEROLE`` and ``CREATEDB`` (``ALTER ROLE ... NOCREATEROLE NOCREATEDB``).

Postgres 15 lets a ``CREATEROLE`` role do 2 and 3 to itself. A login that is a member but no
longer has ``CREATEROLE`` itself cannot revoke the membership ("must have admin option"), so it
acts as the ``CREATEROLE`` role it is a member of (``SET LOCAL ROLE``) for those statements.

Only when asked (``SYNC_SHED_PRIVILEGES=true``, which Terraform sets for the function): the
same code run by an administrator with ``python -m sync migrate`` would otherwise strip the
administrator. A superuser is never touched. The transaction is the caller's (``sync.postgres.schema``
holds the migration lock around it).
"""

from __future__ import annotations

from dataclasses import dataclass

from sync.postgres.db import Cursor, one_row

# Memberships that reach beyond the sync's own objects. Predefined pg_* roles read or write
# every table (pg_read_all_data, pg_write_all_data), files or other sessions.
_POWERFUL_GROUP = "(g.rolname = 'cloudsqlsuperuser' OR starts_with(g.rolname, 'pg_') OR g.rolcreaterole OR g.rolcreatedb)"

# One row per power the current login holds; empty when there is nothing to shed.
HELD_SQL = (
    "SELECT 'attribute', 'CREATEROLE' FROM pg_roles WHERE rolname = current_user AND rolcreaterole AND NOT rolsuper"
    " UNION ALL SELECT 'attribute', 'CREATEDB' FROM pg_roles WHERE rolname = current_user AND rolcreatedb AND NOT rolsuper"
    " UNION ALL SELECT CASE WHEN g.rolcreaterole THEN 'acting_member' ELSE 'member' END, g.rolname"
    " FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member"
    f" WHERE u.rolname = current_user AND NOT u.rolsuper AND {_POWERFUL_GROUP}"
)

# The same question as one boolean, for the single read of an up-to-date start.
ANY_HELD_SQL = f"EXISTS ({HELD_SQL})"


@dataclass(frozen=True)
class Held:
    """What the login holds beyond its own objects."""

    attributes: tuple[str, ...] = ()
    memberships: tuple[str, ...] = ()
    # Member roles that have CREATEROLE: acting as one of them may revoke the memberships.
    acting_roles: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.attributes or self.memberships)

    def describe(self) -> list[str]:
        return [*self.attributes, *(f"membership of {m}" for m in self.memberships)]


def held(cur: Cursor) -> Held:
    """The powers the current login holds (nothing for a superuser: it cannot shed them)."""
    cur.execute(HELD_SQL)
    rows = [(str(kind), str(name)) for kind, name in cur.fetchall()]
    return Held(
        attributes=tuple(name for kind, name in rows if kind == "attribute"),
        memberships=tuple(sorted(name for kind, name in rows if kind != "attribute")),
        acting_roles=tuple(sorted(name for kind, name in rows if kind == "acting_member")),
    )


def quote_ident(name: str) -> str:
    """A Postgres identifier, quoted (names here come from the catalog, never from input)."""
    return '"' + name.replace('"', '""') + '"'


def shed_statements(login: str, database: str, found: Held) -> list[str]:
    """The statements that leave ``found`` behind, in the order that keeps them possible.

    The grants come first, while the membership that makes them possible is still held; the
    ``NOCREATEROLE`` comes last, since each earlier statement may need it.
    """
    me = quote_ident(login)
    statements = [
        f"GRANT CONNECT, TEMPORARY ON DATABASE {quote_ident(database)} TO {me}",
        f"GRANT USAGE, CREATE ON SCHEMA public TO {me}",
    ]
    acting = "CREATEROLE" not in found.attributes and found.acting_roles
    if acting:
        statements.append(f"SET LOCAL ROLE {quote_ident(found.acting_roles[0])}")
    statements += [f"REVOKE {quote_ident(group)} FROM {me}" for group in found.memberships]
    if found.attributes:
        statements.append(f"ALTER ROLE {me} NOCREATEROLE NOCREATEDB")
    if acting:
        statements.append("RESET ROLE")
    return statements


def shed(cur: Cursor) -> Held:
    """Give up what the login holds, inside the caller's transaction; returns what was held."""
    found = held(cur)
    if not found:
        return found
    cur.execute("SELECT current_user, current_database()")
    row = one_row(cur, "SELECT current_user, current_database()")
    for statement in shed_statements(str(row[0]), str(row[1]), found):
        cur.execute(statement)
    return found
