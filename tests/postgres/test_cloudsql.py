"""The production connection path, end to end: Google credentials -> Secret Manager -> the Cloud
SQL Python Connector (Admin API, ephemeral certificate) -> mTLS on port 3307 -> Postgres, and
IAM database login.

Everything runs through the real libraries (google-auth, google-cloud-secret-manager,
cloud-sql-python-connector, pg8000) and functions-framework; only the Google endpoints are
local stand-ins (standins/cloudsql.py), set through the test-only endpoint variables. The
Postgres behind the front checks passwords (scram-sha-256), unlike the machine's own server.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import secrets
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from conftest import Env, SecurePostgres
from functionapp import TOPIC, client, cold_start, push, rendered
from projection import expected_projection

from standins.cloudsql import SECRET, CloudSql
from standins.generator import generate
from sync.postgres import db
from sync.postgres.db import connect_url
from sync.postgres.schema import migrate

_counter = itertools.count()


@pytest.fixture(scope="module")
def cloudsql(secure_postgres: SecurePostgres) -> Iterator[CloudSql]:
    stack = CloudSql.start(("127.0.0.1", secure_postgres.cluster.port))
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(autouse=True)
def _close_connector() -> Iterator[None]:
    # The connector is process-wide (a warm instance keeps it): close it after each test.
    yield
    db.close()


@dataclass
class Target:
    """One test's database on the secure cluster, its owner role, and the role's password secret."""

    secure: SecurePostgres
    database: str
    role: str
    password: str
    secret: str

    def set_password(self, password: str) -> None:
        admin = connect_url(self.secure.admin_url)
        admin.autocommit = True
        admin.cursor().execute(f"ALTER ROLE \"{self.role}\" PASSWORD '{password}'")
        admin.close()
        self.password = password

    def end_sessions(self) -> int:
        """End the role's sessions, as a maintenance restart or failover would; returns how many."""
        admin = connect_url(self.secure.admin_url)
        admin.autocommit = True
        cur = admin.cursor()
        cur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = %s", (self.role,))
        ended = cur.fetchone()[0]
        admin.close()
        return ended


def _create(secure: SecurePostgres, role: str, password: str, *, new_role: bool = True) -> str:
    database = f"os_cloudsql_{uuid.uuid4().hex[:10]}"
    admin = connect_url(secure.admin_url)
    admin.autocommit = True
    cur = admin.cursor()
    if new_role:
        cur.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'")
    else:
        cur.execute(f"ALTER ROLE \"{role}\" PASSWORD '{password}'")
    cur.execute(f'CREATE DATABASE "{database}" OWNER "{role}"')
    admin.close()
    return database


def _drop(secure: SecurePostgres, database: str) -> None:
    admin = connect_url(secure.admin_url)
    admin.autocommit = True
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def target(secure_postgres: SecurePostgres, cloudsql: CloudSql) -> Iterator[Target]:
    """A password-mode database: role password == the secret's only version."""
    role, password = f"sync_{uuid.uuid4().hex[:8]}", _password()
    database = _create(secure_postgres, role, password)
    secret = f"projects/local-project/secrets/db-password-{role}"
    cloudsql.secrets.add_version(secret, password)
    try:
        yield Target(secure_postgres, database, role, password, secret)
    finally:
        _drop(secure_postgres, database)


def _password() -> str:
    return f"Pw-{secrets.token_hex(8)}/?#"


def _env(bq_client, bq_endpoint, secure: SecurePostgres, database: str) -> Env:
    n = next(_counter)
    suffix = uuid.uuid4().hex[:6]
    return Env(
        bq_client,
        bq_endpoint,
        secure.url(database, "postgres", secure.cluster.password),
        f"sf_cs_{n}_{suffix}",
        f"gong_cs_{n}_{suffix}",
    )


def _function_vars(env: Env, connection: dict[str, str], **extra: str) -> dict[str, str]:
    settings = {**env.env_vars(), "SYNC_TOPIC": TOPIC, "SYNC_PAGE_SIZE": "1000", **connection, **extra}
    del settings["DATABASE_URL"]  # the deployed path: no URL, only the instance
    return settings


def _no_secret_in(records: list[logging.LogRecord], *values: str) -> None:
    for line in rendered(records):
        for value in values:
            assert value not in line


def _our_errors(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    # Only ours: after an Admin API 404 the connector (1.23.0) leaves a cancelled task whose
    # exception asyncio later logs at ERROR ("Task exception was never retrieved"), whenever
    # the garbage collector gets to it, possibly during the next test.
    return [r for r in records if r.name.startswith("sync") and r.levelno >= logging.ERROR]


def _events(records: list[logging.LogRecord], event: str) -> list[logging.LogRecord]:
    return [r for r in records if getattr(r, "event", None) == event]


def test_password_mode_syncs_a_page_through_connector_and_secret_manager(
    bq_client, bq_endpoint, cloudsql, target, monkeypatch, caplog
):
    env = _env(bq_client, bq_endpoint, target.secure, target.database)
    data = generate(40, seed=81)
    env.seed(data)
    reads, certs, grants = len(cloudsql.secrets.accesses), len(cloudsql.admin.issued), len(cloudsql.oauth.grants)
    app = client(monkeypatch, _function_vars(env, cloudsql.env(target.database, target.role, secret=target.secret)))
    caplog.set_level(logging.INFO)

    assert push(app, {"type": "tick"}).status_code == 200

    assert env.projection() == expected_projection(data)  # migrated at cold start, then one page, all through the connector
    assert env.query("SELECT status, run_id FROM sync_status") == [("success", None)]
    assert env.query("SELECT DISTINCT tableowner FROM pg_tables WHERE tablename = 'opportunities'") == [(target.role,)]
    assert cloudsql.secrets.accesses[reads:] == [f"{target.secret}/versions/1"]  # read once, then cached
    assert len(cloudsql.admin.issued) == certs + 1  # one ephemeral certificate, reused by the second connection
    assert {c.serial_number for c in cloudsql.front.accepted[-2:]} == {cloudsql.admin.issued[-1].serial_number}
    assert len(cloudsql.oauth.grants) > grants  # google-auth refreshed against the token stand-in
    _no_secret_in(caplog.records, target.password)


def test_rotation_rereads_the_secret_once_and_a_second_refusal_is_a_clear_failure(
    bq_client, bq_endpoint, cloudsql, target, monkeypatch, caplog
):
    env = _env(bq_client, bq_endpoint, target.secure, target.database)
    env.seed(generate(30, seed=82))
    app = client(monkeypatch, _function_vars(env, cloudsql.env(target.database, target.role, secret=target.secret)))
    caplog.set_level(logging.INFO)
    first = target.password
    assert push(app, {"type": "tick"}, message_id="t1").status_code == 200
    reads = len(cloudsql.secrets.accesses)

    # Rotate between invocations of this warm process: a new secret version, then the role.
    second = _password()
    from google.cloud import secretmanager

    rest = secretmanager.SecretManagerServiceClient(transport="rest", client_options={"api_endpoint": cloudsql.secrets.http.url})
    rest.add_secret_version(parent=target.secret, payload={"data": second.encode()})
    target.set_password(second)
    # The warm instance's kept session outlives the rotation (Postgres checks a password at login only).
    assert push(app, {"type": "tick"}, message_id="t2-kept").status_code == 200
    assert len(cloudsql.secrets.accesses) == reads
    assert target.end_sessions() == 1  # the kept one; the next invocation logs in again
    caplog.clear()
    assert push(app, {"type": "tick"}, message_id="t2").status_code == 200  # 28P01, one re-read, success
    assert cloudsql.secrets.accesses[reads:] == [f"{target.secret}/versions/2"]
    assert len(_events(caplog.records, "db_password_reread")) == 1
    assert not [r for r in caplog.records if r.name in {"sync.main", "sync.postgres.db"} and r.levelno >= logging.WARNING]

    # The role changes again but the secret does not: one re-read, then a clear, acked failure.
    third = _password()
    target.set_password(third)
    assert target.end_sessions() == 1
    caplog.clear()
    reads = len(cloudsql.secrets.accesses)
    assert push(app, {"type": "tick"}, message_id="t3").status_code == 200  # acked: retrying cannot help
    assert cloudsql.secrets.accesses[reads:] == [f"{target.secret}/versions/2"]  # exactly once: no loop
    (failure,) = _our_errors(caplog.records)
    assert failure.levelno == logging.CRITICAL
    assert "DB_PASSWORD_SECRET" in failure.getMessage()
    assert "28P01" in failure.getMessage()
    _no_secret_in(caplog.records, first, second, third)
    assert env.query("SELECT status FROM sync_status") == [("success",)]  # the last good run stands


def test_iam_login_presents_the_access_token_and_a_wrong_token_is_refused(
    bq_client, bq_endpoint, cloudsql, secure_postgres, monkeypatch, caplog
):
    role = cloudsql.iam_database_user  # the service account's email without .gserviceaccount.com
    admin = connect_url(secure_postgres.admin_url)
    admin.autocommit = True
    exists = admin.cursor()
    exists.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,))
    (count,) = exists.fetchone()
    admin.close()
    # The role accepts exactly the login token the OAuth stand-in issues, and nothing else.
    database = _create(secure_postgres, role, cloudsql.oauth.login_token, new_role=count == 0)
    original_token = cloudsql.oauth.login_token
    try:
        env = _env(bq_client, bq_endpoint, secure_postgres, database)
        data = generate(25, seed=83)
        env.seed(data)
        reads = len(cloudsql.secrets.accesses)
        app = client(monkeypatch, _function_vars(env, cloudsql.env(database, cloudsql.account.email, iam=True)))
        caplog.set_level(logging.INFO)
        assert push(app, {"type": "tick"}).status_code == 200
        assert env.projection() == expected_projection(data)
        assert cloudsql.front.iam_logins[-1] == (role, original_token)  # truncated user, token from the certificate
        assert cloudsql.secrets.accesses[reads:] == []  # no password anywhere in IAM mode

        # A token that is not the role's password: Postgres itself refuses it.
        cloudsql.oauth.login_token = "ya29.login-" + secrets.token_urlsafe(32)
        cold_start(monkeypatch)
        caplog.clear()
        env.append("opportunity", [{**data.rows("opportunity")[0], "id": "006NEWROW", "name": "Not synced"}])
        assert push(app, {"type": "tick"}, message_id="t2").status_code == 200  # acked: a configuration problem
        (failure,) = _our_errors(caplog.records)
        assert failure.levelno == logging.CRITICAL
        assert "IAM database login" in failure.getMessage()
        assert "DB_USER" in failure.getMessage()
        assert "006NEWROW" not in env.live_ids()
        _no_secret_in(caplog.records, original_token, cloudsql.oauth.login_token)
    finally:
        cloudsql.oauth.login_token = original_token
        _drop(secure_postgres, database)


def test_lazy_refresh_fetches_a_new_certificate_when_the_cached_one_expires(
    bq_client, bq_endpoint, cloudsql, target, monkeypatch
):
    env = _env(bq_client, bq_endpoint, target.secure, target.database)
    env.seed(generate(10, seed=84))
    migrate(connect_url(target.secure.url(target.database, target.role, target.password)))
    # No migration at cold start, and the kept session ended before the second invocation, so
    # each invocation connects and only the clock decides.
    app = client(
        monkeypatch,
        _function_vars(env, cloudsql.env(target.database, target.role, secret=target.secret), SYNC_AUTO_MIGRATE="false"),
    )
    # The connector refreshes a certificate 4 minutes before it expires (refresh_utils._refresh_buffer):
    # this one is stale 2 seconds after it is issued.
    monkeypatch.setattr(cloudsql.admin, "cert_lifetime", dt.timedelta(seconds=242))
    issued = len(cloudsql.admin.issued)
    assert push(app, {"type": "tick"}, message_id="t1").status_code == 200
    assert len(cloudsql.admin.issued) == issued + 1
    first = cloudsql.admin.issued[-1]

    stale_at = first.not_valid_after_utc.timestamp() - 240
    time.sleep(max(0.0, stale_at - time.time()) + 0.3)
    assert target.end_sessions() == 1  # the kept session would not need the new certificate
    assert push(app, {"type": "tick"}, message_id="t2").status_code == 200  # same warm process
    assert len(cloudsql.admin.issued) == issued + 2
    assert cloudsql.front.accepted[-1].serial_number == cloudsql.admin.issued[-1].serial_number != first.serial_number


def _handshake(front_host: str, cert_pem: str, key_pem: bytes, ca_pem: str, tmp_path) -> bytes:
    """Connect to the front with a client certificate; what the first read returns."""
    (tmp_path / "c.pem").write_text(cert_pem)
    (tmp_path / "k.pem").write_bytes(key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(cadata=ca_pem)
    context.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    try:
        with socket.create_connection((front_host, 3307), timeout=5) as raw, context.wrap_socket(raw) as tls:
            # TLS 1.3: the server judges the client certificate after the client's handshake
            # ends, so a refusal arrives on the first read, as an alert or a closed connection.
            tls.sendall(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")  # SSLRequest; an accepting front answers N
            return tls.recv(1)
    except ssl.SSLError:
        return b""


def test_the_front_refuses_expired_and_foreign_certificates(cloudsql, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec

    from standins.certs import CertificateAuthority, key_pem, pem

    key = ec.generate_private_key(ec.SECP256R1())
    valid = pem(cloudsql.ca.issue("client", key.public_key()))
    expired = pem(cloudsql.ca.issue("client", key.public_key(), lifetime=dt.timedelta(seconds=-30)))
    foreign = pem(CertificateAuthority("someone else").issue("client", key.public_key()))
    accepted = len(cloudsql.front.accepted)
    assert _handshake(cloudsql.front.host, valid, key_pem(key), cloudsql.ca.cert_pem, tmp_path) == b"N"
    for refused in (expired, foreign):
        assert _handshake(cloudsql.front.host, refused, key_pem(key), cloudsql.ca.cert_pem, tmp_path) == b""
    assert len(cloudsql.front.accepted) == accepted + 1  # only the valid one got through


def test_admin_api_down_is_retried_and_heals(bq_client, bq_endpoint, cloudsql, target, monkeypatch, caplog):
    env = _env(bq_client, bq_endpoint, target.secure, target.database)
    env.seed(generate(15, seed=85))
    app = client(monkeypatch, _function_vars(env, cloudsql.env(target.database, target.role, secret=target.secret)))
    caplog.set_level(logging.INFO)
    assert push(app, {"type": "tick"}, message_id="t1").status_code == 200
    try:
        cloudsql.admin.stop()
        # A warm instance keeps its certificate: an Admin API outage does not stop it.
        assert push(app, {"type": "tick"}, message_id="t2").status_code == 200
        # A cold start needs the Admin API: retryable, answered without a traceback.
        cold_start(monkeypatch)
        caplog.clear()
        assert push(app, {"type": "tick"}, message_id="t3").status_code == 503
        (failed,) = _events(caplog.records, "page_failed")
        assert (failed.levelno, failed.retryable) == (logging.WARNING, True)
        assert "connection failure" in failed.getMessage()
        assert not [line for line in rendered(caplog.records) if '"exception":' in line]
    finally:
        cloudsql.admin.start()  # same port: the service is back
    # Quota exhausted (429) is retryable too, and the log line carries the status.
    cloudsql.admin.http.outage_status = 429
    try:
        caplog.clear()
        assert push(app, {"type": "tick"}, message_id="t4").status_code == 503
        (failed,) = _events(caplog.records, "page_failed")
        assert (failed.levelno, failed.http_status) == (logging.WARNING, 429)
    finally:
        cloudsql.admin.http.outage_status = None
    assert push(app, {"type": "tick"}, message_id="t5").status_code == 200  # healed
    assert env.query("SELECT status FROM sync_status") == [("success",)]


@pytest.mark.parametrize(
    ("instance", "reason"),
    [
        ("local-project:europe-west1:no-such-instance", "answered 404"),  # well formed, unknown to the Admin API
        ("local-project:us-central1:crm", "does not match the instance"),  # right instance, wrong region
        ("crm", "must be PROJECT:REGION:INSTANCE"),  # malformed: caught when the settings are read
    ],
)
def test_wrong_instance_name_is_a_permanent_configuration_failure(
    bq_client, bq_endpoint, cloudsql, target, monkeypatch, caplog, instance, reason
):
    env = _env(bq_client, bq_endpoint, target.secure, target.database)
    env.seed(generate(5, seed=86))
    connection = {**cloudsql.env(target.database, target.role, secret=target.secret), "INSTANCE_CONNECTION_NAME": instance}
    app = client(monkeypatch, _function_vars(env, connection))
    caplog.set_level(logging.INFO)
    assert push(app, {"type": "tick"}).status_code == 200  # acked: no 24 hours of retries
    (failure,) = _our_errors(caplog.records)
    assert failure.levelno == logging.CRITICAL
    assert "INSTANCE_CONNECTION_NAME" in failure.getMessage()
    assert reason in failure.getMessage()
    _no_secret_in(caplog.records, target.password)


def test_the_secret_name_is_checked_too(bq_client, bq_endpoint, cloudsql, target, monkeypatch, caplog):
    env = _env(bq_client, bq_endpoint, target.secure, target.database)
    env.seed(generate(5, seed=87))
    connection = cloudsql.env(target.database, target.role, secret=f"{SECRET}-that-does-not-exist")
    app = client(monkeypatch, _function_vars(env, connection))
    caplog.set_level(logging.INFO)
    assert push(app, {"type": "tick"}).status_code == 200
    (failure,) = _our_errors(caplog.records)
    assert (failure.levelno, "DB_PASSWORD_SECRET" in failure.getMessage()) == (logging.CRITICAL, True)


def test_missing_google_credentials_are_a_configuration_error(bq_client, bq_endpoint, cloudsql, target, monkeypatch, caplog):
    env = _env(bq_client, bq_endpoint, target.secure, target.database)
    env.seed(generate(5, seed=88))
    connection = {
        **cloudsql.env(target.database, target.role, secret=target.secret),
        "GOOGLE_APPLICATION_CREDENTIALS": str(cloudsql.key_file.with_name("deleted-key.json")),
    }
    app = client(monkeypatch, _function_vars(env, connection))
    caplog.set_level(logging.INFO)
    assert push(app, {"type": "tick"}).status_code == 200  # acked: DefaultCredentialsError is not weather
    (failure,) = _our_errors(caplog.records)
    assert failure.levelno == logging.CRITICAL
    assert "Google credentials are not available" in failure.getMessage()
    assert "GOOGLE_APPLICATION_CREDENTIALS" in failure.getMessage()


@pytest.mark.parametrize("connectivity", ["private", "psc"])
def test_private_ip_and_private_service_connect_sync_through_the_address_of_their_kind(
    bq_client, bq_endpoint, cloudsql, target, monkeypatch, caplog, connectivity
):
    """An instance without a public IP (the org policy sql.restrictPublicIp), reached as Terraform deploys it."""
    env = _env(bq_client, bq_endpoint, target.secure, target.database)
    data = generate(20, seed=90)
    env.seed(data)
    monkeypatch.setattr(cloudsql.admin, "connectivity", connectivity)
    connection = cloudsql.env(target.database, target.role, secret=target.secret, ip_type=connectivity)
    app = client(monkeypatch, _function_vars(env, connection))
    accepted = len(cloudsql.front.accepted)
    caplog.set_level(logging.INFO)

    assert push(app, {"type": "tick"}).status_code == 200

    assert env.projection() == expected_projection(data)
    assert len(cloudsql.front.accepted) > accepted  # through the connector's mTLS, at the private address
    assert _events(caplog.records, "page_failed") == []


@pytest.mark.parametrize(
    ("connectivity", "ip_type"),
    [
        ("private", "public"),  # the instance lost its public IP (or never had one): the default no longer fits
        ("public", "private"),  # private chosen, but the instance has no private services access address
        ("private", "psc"),  # PSC chosen for an instance without PSC enabled
    ],
)
def test_an_ip_type_the_instance_lacks_is_a_configuration_error_naming_db_ip_type(
    bq_client, bq_endpoint, cloudsql, target, monkeypatch, caplog, connectivity, ip_type
):
    env = _env(bq_client, bq_endpoint, target.secure, target.database)
    env.seed(generate(5, seed=91))
    monkeypatch.setattr(cloudsql.admin, "connectivity", connectivity)
    app = client(
        monkeypatch, _function_vars(env, cloudsql.env(target.database, target.role, secret=target.secret, ip_type=ip_type))
    )
    caplog.set_level(logging.INFO)
    assert push(app, {"type": "tick"}).status_code == 200  # acked: no retry gives the instance that address
    (failure,) = _our_errors(caplog.records)
    assert failure.levelno == logging.CRITICAL
    assert f"DB_IP_TYPE={ip_type} but instance" in failure.getMessage()
