"""Settings.from_env: defaults, every failure named at once, secrets never echoed."""

from __future__ import annotations

import re

import pytest

from sync.core import memory
from sync.core.config import KNOWN_ENV_VARS, IpType, Settings
from sync.core.errors import ConfigurationError

BASE = {"BIGQUERY_PROJECT": "acme-data", "DATABASE_URL": "postgresql://u:pw@db/app"}


def test_defaults():
    s = Settings.from_env(BASE)
    assert (s.salesforce_dataset, s.gong_dataset, s.page_size) == ("salesforce", "gongio_ft", 2000)
    assert s.cloud_sql is None
    assert s.auto_migrate


@pytest.mark.parametrize(
    ("raw", "chosen"),
    [
        (None, IpType.PUBLIC),  # unset: the connector's own default, the instance's public IP
        ("private", IpType.PRIVATE),  # private services access
        ("PSC", IpType.PSC),  # case does not matter, as for the connector
    ],
)
def test_db_ip_type_chooses_the_connectors_ip_type(raw, chosen):
    env = {"INSTANCE_CONNECTION_NAME": "acme-data:europe-west1:crm", "DB_USER": "u", "DB_NAME": "d", "DB_IAM_AUTH": "true"}
    s = Settings.from_env({**env, **({"DB_IP_TYPE": raw} if raw else {})}, require_source=False)
    assert s.cloud_sql is not None
    assert s.cloud_sql.ip_type is chosen


def test_cloud_sql_password_mode():
    s = Settings.from_env(
        {
            "BIGQUERY_PROJECT": "acme-data",
            "INSTANCE_CONNECTION_NAME": "acme-data:europe-west1:crm",
            "DB_USER": "sync",
            "DB_NAME": "app",
            "DB_PASSWORD_SECRET": "projects/acme-data/secrets/db-password/versions/latest",
        }
    )
    assert s.cloud_sql is not None
    assert s.cloud_sql.password_secret.endswith("/versions/latest")
    assert not s.cloud_sql.iam_auth


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        # nothing at all: both required groups are named
        ({}, ["BIGQUERY_PROJECT is required", "DATABASE_URL or INSTANCE_CONNECTION_NAME"]),
        # identifiers are validated, not just passed into SQL
        ({**BASE, "SALESFORCE_DATASET": "sf`; DROP"}, ["SALESFORCE_DATASET must be a BigQuery dataset name"]),
        ({**BASE, "BIGQUERY_PROJECT": "Bad_Project"}, ["BIGQUERY_PROJECT must be a GCP project id"]),
        # numbers are parsed and range-checked
        ({**BASE, "SYNC_PAGE_SIZE": "lots"}, ["SYNC_PAGE_SIZE must be an integer"]),
        ({**BASE, "SYNC_PAGE_SIZE": "0"}, ["SYNC_PAGE_SIZE must be between 1 and 50000"]),
        # int() reads other scripts' digits ("٣" is 3), underscores and spaces inside; a setting takes 0-9 only
        ({**BASE, "SYNC_PAGE_SIZE": "\u0663"}, ["SYNC_PAGE_SIZE must be an integer written in the digits 0-9, got '\u0663'"]),
        ({**BASE, "SYNC_MAX_PAGES": "\uff11\uff10"}, ["SYNC_MAX_PAGES must be an integer written in the digits 0-9"]),
        ({**BASE, "SYNC_LEASE_SECONDS": "1_000"}, ["SYNC_LEASE_SECONDS must be an integer written in the digits 0-9"]),
        # the connector's ip_type, spelled as the choice Terraform makes
        (
            {
                **BASE,
                "DATABASE_URL": "",
                "INSTANCE_CONNECTION_NAME": "p:r:i",
                "DB_USER": "u",
                "DB_NAME": "d",
                "DB_IAM_AUTH": "true",
                "DB_IP_TYPE": "vpc",
            },
            ["DB_IP_TYPE must be one of public, private, psc, got 'vpc'"],
        ),
        # without the connector there is no address to choose
        ({**BASE, "DB_IP_TYPE": "private"}, ["DB_IP_TYPE is only used with INSTANCE_CONNECTION_NAME"]),
        (
            {**BASE, "DB_IAM_AUTH": "maybe", "INSTANCE_CONNECTION_NAME": "p:r:i", "DB_USER": "u", "DB_NAME": "d"},
            ["DB_IAM_AUTH must be true or false", "DATABASE_URL and INSTANCE_CONNECTION_NAME are mutually exclusive"],
        ),
        # Cloud SQL needs its companions, and exactly one auth mode
        (
            {"BIGQUERY_PROJECT": "acme-data", "INSTANCE_CONNECTION_NAME": "acme-data:eu:crm"},
            ["DB_USER is required", "DB_NAME is required", "DB_PASSWORD_SECRET or DB_IAM_AUTH=true is required"],
        ),
        ({**BASE, "SYNC_TOPIC": "sync-topic"}, ["SYNC_TOPIC must be projects/PROJECT/topics/TOPIC"]),
        ({**BASE, "LOG_LEVEL": "chatty"}, ["LOG_LEVEL must be one of"]),
    ],
)
def test_every_problem_is_named_in_one_error(variables, named):
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(variables)
    for fragment in named:
        assert fragment in str(info.value)


def test_topic_required_for_the_function():
    with pytest.raises(ConfigurationError, match="SYNC_TOPIC is required"):
        Settings.from_env(BASE, require_topic=True)


def test_database_url_password_never_in_the_error():
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({**BASE, "DATABASE_URL": "mysql://user:s3cret@db/app"})
    assert "s3cret" not in str(info.value)


def test_known_env_vars_cover_everything_read():
    import re
    from pathlib import Path

    source = (Path(__file__).resolve().parents[2] / "sync" / "core" / "config.py").read_text()
    read = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', source)) - {"INFO", "DEBUG", "WARNING", "ERROR"}
    assert read <= KNOWN_ENV_VARS


CLOUD_SQL = {
    "BIGQUERY_PROJECT": "acme-data",
    "INSTANCE_CONNECTION_NAME": "acme-data:europe-west1:crm",
    "DB_USER": "sync",
    "DB_NAME": "app",
    "DB_PASSWORD_SECRET": "projects/acme-data/secrets/db-password/versions/latest",
}


def test_database_url_is_parsed_when_settings_are_read():
    s = Settings.from_env({**BASE, "DATABASE_URL": "postgresql://u:p%2Fw@db:6543/app?sslmode=require"})
    assert s.database_url is not None
    assert (s.database_url.host, s.database_url.port, s.database_url.password) == ("db", 6543, "p/w")
    assert "p/w" not in repr(s)  # a logged settings object cannot leak it


def test_a_malformed_database_url_is_one_of_the_named_problems():
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(
            {**BASE, "DATABASE_URL": "postgresql://postgres:Pw-LEAK-9f3e/x@127.0.0.1:5432/db", "SYNC_PAGE_SIZE": "0"}
        )
    text = str(info.value)
    assert "DATABASE_URL has a port that is not a number" in text
    assert "SYNC_PAGE_SIZE" in text  # still every problem at once
    assert "Pw-LEAK" not in text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        # a password pasted where the secret's resource name belongs
        ("DB_PASSWORD_SECRET", "Pw-LEAK-9f3e"),
        # endpoint URLs can carry user:password@
        ("SECRET_MANAGER_API_ENDPOINT", "ftp://user:Pw-LEAK-9f3e@host"),
        ("CLOUD_SQL_ADMIN_API_ENDPOINT", "user:Pw-LEAK-9f3e@host"),
        ("BIGQUERY_API_ENDPOINT", "user:Pw-LEAK-9f3e@host"),
    ],
)
def test_values_that_can_carry_credentials_are_never_echoed(name, value):
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({**CLOUD_SQL, name: value})
    assert name in str(info.value)
    assert "Pw-LEAK" not in str(info.value)


def test_ordinary_values_are_still_echoed():
    # Echo stays where it helps and cannot leak: a page size is not a credential.
    with pytest.raises(ConfigurationError, match="got 'lots'"):
        Settings.from_env({**BASE, "SYNC_PAGE_SIZE": "lots"})


def test_test_only_endpoints_default_to_google_and_are_carried():
    assert Settings.from_env(CLOUD_SQL).cloud_sql.admin_api_endpoint is None  # the connector's default: Google
    s = Settings.from_env(
        {
            **CLOUD_SQL,
            "CLOUD_SQL_ADMIN_API_ENDPOINT": "http://127.0.0.1:9001",
            "SECRET_MANAGER_API_ENDPOINT": "http://127.0.0.1:9002",
        }
    )
    assert (s.cloud_sql.admin_api_endpoint, s.cloud_sql.secret_manager_endpoint) == (
        "http://127.0.0.1:9001",
        "http://127.0.0.1:9002",
    )


def test_test_only_endpoints_are_refused_without_cloud_sql():
    # Set with DATABASE_URL they would do nothing: say so instead of ignoring them.
    with pytest.raises(ConfigurationError, match="CLOUD_SQL_ADMIN_API_ENDPOINT is only used with INSTANCE_CONNECTION_NAME"):
        Settings.from_env({**BASE, "CLOUD_SQL_ADMIN_API_ENDPOINT": "http://127.0.0.1:9001"})


@pytest.mark.parametrize(
    ("timeout", "budget", "fits"),
    [
        (None, None, True),  # defaults: 300 s of work and the 60 s reserve inside 540 s
        ("540", "480", True),  # exactly fits: budget + reserve == timeout
        ("540", "481", False),  # one second too many
        ("540", "600", False),  # the budget alone passes the timeout
        (None, "500", False),  # the timeout defaults to 540, the 2nd-gen event-driven maximum
        ("180", "120", True),  # Terraform's smallest timeout with its largest allowed budget
        ("30", "10", False),  # a timeout shorter than the reserve leaves no budget at all
    ],
)
def test_a_budget_that_does_not_fit_the_timeout_is_refused_naming_the_variables(timeout, budget, fits):
    env = dict(BASE)
    if timeout is not None:
        env["SYNC_FUNCTION_TIMEOUT_SECONDS"] = timeout
    if budget is not None:
        env["SYNC_TIME_BUDGET_SECONDS"] = budget
    if fits:
        s = Settings.from_env(env)
        assert s.time_budget_seconds + 60 <= s.function_timeout_seconds
        return
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(env)
    text = str(info.value)
    assert "SYNC_TIME_BUDGET_SECONDS" in text
    assert "SYNC_FUNCTION_TIMEOUT_SECONDS" in text
    assert "lower SYNC_TIME_BUDGET_SECONDS to at most" in text


@pytest.mark.parametrize(
    ("text", "mib"),
    [
        ("256M", 256e6 / 2**20),  # M is a power of ten, as Cloud Functions reads it
        ("512Mi", 512.0),
        ("1G", 1e9 / 2**20),
        ("2Gi", 2048.0),
        ("256MB", None),  # not a unit Cloud Functions takes
        ("0.5Gi", None),  # whole numbers only
        ("256", None),  # a unit is required
    ],
)
def test_function_memory_units(text, mib):
    assert memory.parse_memory_mib(text) == mib


@pytest.mark.parametrize("memory_text", ["256M", "512Mi", "1Gi", "2Gi"])
def test_the_largest_page_that_fits_is_accepted_and_one_more_row_is_refused(memory_text):
    mib = memory.parse_memory_mib(memory_text)
    largest = min(memory.largest_page(mib), 50_000)
    env = {**BASE, "SYNC_FUNCTION_MEMORY": memory_text}
    assert Settings.from_env({**env, "SYNC_PAGE_SIZE": str(largest)}).page_size == largest
    assert memory.peak_mib(largest) * memory.HEADROOM <= mib
    if largest == 50_000:
        return  # the memory holds every page size the variable allows
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({**env, "SYNC_PAGE_SIZE": str(largest + 1)})
    message = str(info.value)
    for named in ("SYNC_PAGE_SIZE", "SYNC_FUNCTION_MEMORY", "page_size", "function_memory", f"at most {largest}"):
        assert named in message


def test_the_default_page_fits_the_default_memory_and_the_largest_page_needs_more():
    # Terraform's defaults: page_size 2000, function_memory 256M.
    assert Settings.from_env({**BASE, "SYNC_FUNCTION_MEMORY": "256M"}).page_size == 2000
    with pytest.raises(ConfigurationError, match="SYNC_PAGE_SIZE=50000 needs about 890 MiB"):
        Settings.from_env({**BASE, "SYNC_FUNCTION_MEMORY": "256M", "SYNC_PAGE_SIZE": "50000"})
    assert Settings.from_env({**BASE, "SYNC_FUNCTION_MEMORY": "2Gi", "SYNC_PAGE_SIZE": "50000"}).page_size == 50_000


def test_without_a_function_memory_no_page_size_is_refused_and_a_malformed_one_is_named():
    assert Settings.from_env({**BASE, "SYNC_PAGE_SIZE": "50000"}).function_memory_mib is None
    with pytest.raises(ConfigurationError, match="SYNC_FUNCTION_MEMORY must be a number with unit M, Mi, G or Gi"):
        Settings.from_env({**BASE, "SYNC_FUNCTION_MEMORY": "lots"})


@pytest.mark.parametrize(
    ("value", "percent"),
    [
        (None, 10.0),  # the default: a tenth of the live replica in one run
        ("25", 25.0),
        ("2.5%", 2.5),  # a percent sign is allowed
        ("100", 100.0),  # the whole replica: only a run deleting more than it had would be held
        ("off", None),  # the guard is off
        ("OFF", None),
    ],
)
def test_delete_guard_percent(value, percent):
    s = Settings.from_env(BASE if value is None else {**BASE, "SYNC_DELETE_GUARD_PERCENT": value})
    assert s.delete_guard.percent == percent
    assert s.delete_guard.min_rows == 100


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        # zero would hold every delete: say off instead
        ({"SYNC_DELETE_GUARD_PERCENT": "0"}, "SYNC_DELETE_GUARD_PERCENT must be a percentage above 0 and at most 100, or off"),
        ({"SYNC_DELETE_GUARD_PERCENT": "150"}, "SYNC_DELETE_GUARD_PERCENT must be a percentage"),
        ({"SYNC_DELETE_GUARD_PERCENT": "nan"}, "SYNC_DELETE_GUARD_PERCENT must be a percentage"),
        ({"SYNC_DELETE_GUARD_PERCENT": "lots"}, "got 'lots'"),
        ({"SYNC_DELETE_GUARD_MIN_ROWS": "0"}, "SYNC_DELETE_GUARD_MIN_ROWS must be between 1 and 100000000"),
    ],
)
def test_a_bad_delete_guard_setting_is_named(variables, named):
    with pytest.raises(ConfigurationError, match=re.escape(named)):
        Settings.from_env({**BASE, **variables})
