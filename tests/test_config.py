"""Settings.from_env: defaults, every failure named at once, secrets never echoed."""

from __future__ import annotations

import pytest

from sync.config import KNOWN_ENV_VARS, Settings
from sync.errors import ConfigurationError

BASE = {"BIGQUERY_PROJECT": "acme-data", "DATABASE_URL": "postgresql://u:pw@db/app"}


def test_defaults():
    s = Settings.from_env(BASE)
    assert (s.salesforce_dataset, s.gong_dataset, s.page_size) == ("salesforce", "gongio_ft", 2000)
    assert s.cloud_sql is None
    assert s.auto_migrate


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

    source = (Path(__file__).resolve().parent.parent / "sync" / "config.py").read_text()
    read = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', source)) - {"INFO", "DEBUG", "WARNING", "ERROR"}
    assert read <= KNOWN_ENV_VARS
