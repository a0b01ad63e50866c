"""Real parts for every test: one PostgreSQL server per session with a migrated template database
cloned per test, the BigQuery emulator per session with fresh datasets per test, driven through the
real ``google-cloud-bigquery`` client."""

from __future__ import annotations

import itertools
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from standins import bigquery as sbq
from standins.certs import CertificateAuthority
from standins.generator import FivetranData
from standins.postgres import Cluster, ensure_server
from sync.bigquery.source import BigQuerySource
from sync.core.config import Settings
from sync.core.messages import Message
from sync.postgres.db import Connection, connect_url
from sync.postgres.schema import migrate
from sync.run.pipeline import Checkpoint, Outcome, Pipeline, Publisher

_counter = itertools.count()


@pytest.fixture(scope="session", autouse=True)
def _no_inherited_terminal_size() -> None:
    """Drop ``COLUMNS``/``LINES``: pytest-xdist workers set them to 80x24, which the CLI's tables honour.

    Tests that care about a width pass ``COLUMNS`` themselves; the rest see the CLI's own default.
    """
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """One PostgreSQL server for the whole session, started here unless TEST_POSTGRES_URL names one.

    A private cluster (fsync off) rather than the machine's shared server: on the shared one every
    ``DROP DATABASE`` forces a checkpoint that flushes everyone's dirty pages, which measured ~3 s
    per test while other suites ran, against ~50 ms here. Without server binaries, the machine's
    server (or whatever ``ensure_server`` finds) is used as before.
    """
    if os.environ.get("TEST_POSTGRES_URL"):
        yield ensure_server()
        return
    try:
        cluster = Cluster.start()
    except (RuntimeError, OSError, LookupError, subprocess.CalledProcessError):
        yield ensure_server()
        return
    try:
        yield cluster.url
    finally:
        cluster.stop()


def _with_db(admin_url: str, name: str) -> str:
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def migrated_template(pg_admin_url: str) -> Iterator[str]:
    """A database migrated once per session, cloned by every ``database_url``.

    Cloning (``CREATE DATABASE ... TEMPLATE``) copies the migrated tables and the ``sync_status``
    row; it measured ~90 ms against ~600 ms for creating and migrating. Nothing connects to the
    template after migrating it, as cloning requires.
    """
    name = f"os_template_{uuid.uuid4().hex[:12]}"
    admin = connect_url(pg_admin_url)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    conn = connect_url(_with_db(pg_admin_url, name))
    migrate(conn)
    conn.close()
    try:
        yield name
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def database_url(pg_admin_url: str, migrated_template: str) -> Iterator[str]:
    """A fresh, migrated database for this test (a clone of the session's template), dropped afterwards."""
    name = f"os_test_{uuid.uuid4().hex[:12]}"
    admin = connect_url(pg_admin_url)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}" TEMPLATE "{migrated_template}"')
    try:
        yield _with_db(pg_admin_url, name)
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def empty_database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh database with no tables at all (not migrated), dropped afterwards."""
    name = f"os_empty_{uuid.uuid4().hex[:12]}"
    admin = connect_url(pg_admin_url)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_db(pg_admin_url, name)
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# What a role needs to run the sync on tables someone else created: data access, no DDL.
DATA_ONLY_GRANTS = (
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
    "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
)


@contextmanager
def database_role(url: str, grants: tuple[str, ...] = ()) -> Iterator[str]:
    """A login role that holds only ``grants`` in ``url``'s database; yields a URL that logs in as it.

    Roles are cluster-wide, so the role is dropped afterwards together with its privileges.
    """
    from urllib.parse import urlparse, urlunparse

    role = f"os_role_{uuid.uuid4().hex[:10]}"
    admin = connect_url(url)
    admin.autocommit = True
    cur = admin.cursor()
    cur.execute(f'CREATE ROLE "{role}" LOGIN')
    for grant in grants:
        cur.execute(grant.format(role=f'"{role}"'))
    parts = urlparse(url)
    netloc = f"{role}@{parts.hostname}:{parts.port or 5432}"
    try:
        yield urlunparse(parts._replace(netloc=netloc))
    finally:
        cur.execute(f'DROP OWNED BY "{role}"')
        cur.execute(f'DROP ROLE "{role}"')
        admin.close()


@pytest.fixture(scope="session")
def bq_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    emulator = sbq.start_emulator(tmp_path_factory.mktemp("bqemu"))
    try:
        yield emulator.endpoint
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def bq_client(bq_endpoint: str) -> Any:
    return sbq.client(bq_endpoint)


@dataclass
class ListPublisher:
    """Collects continuations in memory; a test decides when (and how often) to deliver them."""

    sent: list[Message] = field(default_factory=list)
    fail: bool = False

    def publish(self, message: Message) -> None:
        if self.fail:
            msg = "publish failed (injected)"
            raise ConnectionError(msg)
        self.sent.append(message)


@dataclass
class Env:
    """One test's source datasets and database, and helpers to run the real pipeline on them."""

    bq: Any
    endpoint: str
    database_url: str
    salesforce_dataset: str
    gong_dataset: str
    overrides: dict[str, str] = field(default_factory=dict)
    data: FivetranData | None = None
    _source: BigQuerySource | None = None

    def settings(self, **overrides: str) -> Settings:
        return Settings.from_env(self.env_vars(**overrides))

    def env_vars(self, **overrides: str) -> dict[str, str]:
        return {
            "BIGQUERY_PROJECT": sbq.PROJECT,
            "BIGQUERY_API_ENDPOINT": self.endpoint,
            "SALESFORCE_DATASET": self.salesforce_dataset,
            "GONG_DATASET": self.gong_dataset,
            "DATABASE_URL": self.database_url,
            "SYNC_LOOKBACK_SECONDS": "0",
            **self.overrides,
            **overrides,
        }

    def seed(self, data: FivetranData, **kwargs: Any) -> None:
        sbq.seed(self.bq, data, salesforce_dataset=self.salesforce_dataset, gong_dataset=self.gong_dataset, **kwargs)
        self.data = data
        self._source = None  # schema may differ now

    def append(self, logical_table: str, rows: list[dict[str, Any]], spelling: str = "snake") -> None:
        """Land more rows in a source table, as a later Fivetran sync would."""
        home, table = sbq.TABLE_HOME[logical_table]
        dataset = self.salesforce_dataset if home == "salesforce" else self.gong_dataset
        rename = sbq.pascal_case if spelling == "pascal" else (lambda c: c)
        sbq.load_rows(self.bq, f"{sbq.PROJECT}.{dataset}.{table}", [{rename(k): v for k, v in r.items()} for r in rows])

    def update(self, logical_table: str, key: str, key_value: str, **changes: Any) -> None:
        """Change rows in the source (as Fivetran's merge would) and in ``self.data`` alike."""
        from google.cloud import bigquery

        params = [bigquery.ScalarQueryParameter("key_value", "STRING", key_value)]
        sets = []
        types = self.data.schemas[logical_table] if self.data else {}
        for i, (column, value) in enumerate(changes.items()):
            params.append(bigquery.ScalarQueryParameter(f"v{i}", types.get(column, "STRING"), value))
            sets.append(f"`{column}` = @v{i}")
        sql = f"UPDATE {self.table(logical_table)} SET {', '.join(sets)} WHERE `{key}` = @key_value"
        self.bq.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=params)).result(timeout=60)
        if self.data is not None:
            for row in self.data.rows(logical_table):
                if row.get(key) == key_value:
                    row.update(changes)

    def purge(self, logical_table: str, key: str, key_value: str) -> None:
        """Remove rows from the source entirely (a recycle-bin purge never flags is_deleted)."""
        from google.cloud import bigquery

        params = [bigquery.ScalarQueryParameter("key_value", "STRING", key_value)]
        sql = f"DELETE FROM {self.table(logical_table)} WHERE `{key}` = @key_value"
        self.bq.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=params)).result(timeout=60)
        if self.data is not None:
            rows = self.data.rows(logical_table)
            rows[:] = [r for r in rows if r.get(key) != key_value]

    def retire(self, logical_table: str, key_value: str, at: str, key: str = "id") -> list[dict[str, Any]]:
        """End the active versions of a History Mode record, in the source and in ``self.data``.

        What Fivetran does when the record changes (a new version follows) or is deleted (none
        does): ``_fivetran_active`` turns false and ``_fivetran_end`` is set, while
        ``_fivetran_synced`` stays as it was. Returns the retired versions as they were.
        """
        from google.cloud import bigquery

        params = [
            bigquery.ScalarQueryParameter("key_value", "STRING", key_value),
            bigquery.ScalarQueryParameter("at", "TIMESTAMP", at),
        ]
        sql = (
            f"UPDATE {self.table(logical_table)} SET `_fivetran_active` = FALSE, `_fivetran_end` = @at"
            f" WHERE `{key}` = @key_value AND `_fivetran_active`"
        )
        self.bq.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=params)).result(timeout=60)
        assert self.data is not None
        retired = []
        for row in self.data.rows(logical_table):
            if row.get(key) == key_value and row.get("_fivetran_active"):
                retired.append(dict(row))
                row.update(_fivetran_active=False, _fivetran_end=at)
        return retired

    def new_version(self, logical_table: str, key_value: str, at: str, **changes: Any) -> dict[str, Any]:
        """Land a new active version of a History Mode record (a change, or a record coming back).

        The previous active version, if any, is retired at the same instant.
        """
        from standins.generator import OPEN_END

        assert self.data is not None
        retired = self.retire(logical_table, key_value, at)
        base = (
            retired[-1]
            if retired
            else max((r for r in self.data.rows(logical_table) if r.get("id") == key_value), key=lambda r: r["_fivetran_start"])
        )
        versioning = {"_fivetran_active": True, "_fivetran_start": at, "_fivetran_end": OPEN_END, "_fivetran_synced": at}
        row = {**base, **changes, **versioning}
        self.append(logical_table, [row])
        self.data.rows(logical_table).append(row)
        return row

    def execute(self, sql: str) -> None:
        """Run DML in the source (the emulator), e.g. a purge Fivetran would mirror."""
        self.bq.query(sql).result(timeout=60)

    def table(self, logical_table: str) -> str:
        home, table = sbq.TABLE_HOME[logical_table]
        dataset = self.salesforce_dataset if home == "salesforce" else self.gong_dataset
        return f"`{sbq.PROJECT}`.`{dataset}`.`{table}`"

    def source(self, settings: Settings | None = None) -> BigQuerySource:
        if settings is not None:
            return BigQuerySource(self.bq, settings)
        if self._source is None:
            self._source = BigQuerySource(self.bq, self.settings())
        return self._source

    def connect(self) -> Connection:
        return connect_url(self.database_url)

    def pipeline(
        self,
        publisher: Publisher | None = None,
        checkpoint: Callable[[Checkpoint], None] | None = None,
        **overrides: str,
    ) -> Pipeline:
        settings = self.settings(**overrides)
        source = self.source(settings) if overrides else self.source()
        return Pipeline(settings, source, self.connect, publisher, checkpoint)

    def drain(self, first: Message | None = None, **overrides: str) -> list[Outcome]:
        """Run pages in-process until the run completes, as ``run --until-done`` does."""
        pipeline = self.pipeline(**overrides)
        outcomes = [pipeline.handle(first or Message.tick())]
        while outcomes[-1].continuation is not None:
            outcomes.append(pipeline.handle(outcomes[-1].continuation))
            assert len(outcomes) < 10_000, "runaway chain"
        return outcomes

    def snapshot(self) -> dict[str, tuple[Any, ...]]:
        """The synced state by source id: every stored column that the source decides."""
        rows = self.query(
            "SELECT gong_opportunity_id, name, account_name, owner_email, stage, close_date, amount, health_score,"
            " metadata::text, deleted_at IS NOT NULL,"
            " (SELECT array_agg(call_id ORDER BY call_id) FROM call_opportunities c WHERE c.opportunity_id = o.id)"
            " FROM opportunities o ORDER BY gong_opportunity_id"
        )
        return {r[0]: r[1:] for r in rows}

    def projection(self) -> dict[str, tuple[Any, ...]]:
        """Live rows, every stored column (``projection.COLUMNS``), to compare with the source."""
        from projection import stored_metadata

        rows = self.query(
            "SELECT o.gong_opportunity_id, o.name, o.account_name, o.owner_email, o.stage, o.amount, o.close_date,"
            " o.health_score, o.metadata,"
            " coalesce((SELECT array_agg(call_id ORDER BY call_id) FROM call_opportunities c WHERE c.opportunity_id = o.id),"
            " '{}'::text[])"
            " FROM active_opportunities o"
        )
        return {r[0]: (*r[1:8], stored_metadata(r[8]), tuple(r[9])) for r in rows}

    def live_ids(self) -> set[str]:
        return {r[0] for r in self.query("SELECT gong_opportunity_id FROM active_opportunities")}

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return query_url(self.database_url, sql, params)


def query_url(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement in its own transaction and return its rows."""
    conn = connect_url(url)
    try:
        cur = conn.cursor()
        cur.execute(sql, params)
        rows = [tuple(r) for r in cur.fetchall()] if cur.description else []
        conn.commit()
        return rows
    finally:
        conn.close()


@pytest.fixture
def env(bq_client: Any, bq_endpoint: str, database_url: str) -> Env:
    n = next(_counter)
    suffix = uuid.uuid4().hex[:6]
    return Env(bq_client, bq_endpoint, database_url, f"salesforce_{n}_{suffix}", f"gong_{n}_{suffix}")


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class SecurePostgres:
    """A throwaway cluster that checks passwords (scram-sha-256) and speaks TLS.

    The machine's server trusts every login from 127.0.0.1, so a wrong password would pass
    there; tests of passwords, rotation, IAM login and ``sslmode`` use this one instead.
    """

    cluster: Cluster
    ca_file: Path

    @property
    def admin_url(self) -> str:
        return self.cluster.url

    def url(self, database: str, user: str = "postgres", password: str | None = None) -> str:
        auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password is not None else "")
        return f"postgresql://{auth}@127.0.0.1:{self.cluster.port}/{database}"


@pytest.fixture(scope="session")
def secure_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecurePostgres]:
    ca = CertificateAuthority("opportunity-sync test Postgres CA")
    ca_file = tmp_path_factory.mktemp("pg-ca") / "ca.pem"
    ca_file.write_text(ca.cert_pem)
    # A password with every character a URL reserves: the admin URL itself must encode it.
    cluster = Cluster.start(password=f"adm/{uuid.uuid4().hex[:8]}?#@:", tls=ca.server_pair("127.0.0.1"))
    try:
        yield SecurePostgres(cluster, ca_file)
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The official Pub/Sub emulator, started once per session (each module names its own topics)."""
    from standins import pubsub as spubsub

    emulator = spubsub.start(tmp_path_factory.mktemp("pubsub"))
    try:
        yield emulator.host
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def pubsub_host(pubsub_emulator: str) -> Iterator[str]:
    """The session's Pub/Sub emulator, which the client libraries find by env for this module only."""
    os.environ["PUBSUB_EMULATOR_HOST"] = pubsub_emulator
    try:
        yield pubsub_emulator
    finally:
        os.environ.pop("PUBSUB_EMULATOR_HOST", None)


def migrate_below(url: str, version: int) -> None:
    """Apply the shipped migrations older than ``version``, as an earlier release deployed them."""
    from sync.postgres.schema import available

    conn = connect_url(url)
    try:
        cur = conn.cursor()
        cur.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz)")
        for m in available():
            if m.version < version:
                cur.execute(m.sql)
                cur.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (m.version, m.name))
        conn.commit()
    finally:
        conn.close()
