"""Settings read once from the environment and validated up front.

Only entry points (``main.py``, the CLI) pass ``os.environ`` in; everything else receives a
frozen :class:`Settings`. A bad configuration raises one :class:`ConfigurationError` naming
every offending variable, so an operator fixes all of them in one deploy.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from sync.core import memory
from sync.core.database_url import DatabaseUrl, parse_database_url
from sync.core.deadline import RESERVE_SECONDS
from sync.core.errors import ConfigurationError

# BigQuery project ids: 6-30 chars, lowercase letters, digits, hyphens; a domain-scoped
# project ("example.com:proj") is also legal. Datasets: letters, digits, underscores.
_PROJECT_RE = re.compile(r"^(?:[a-z][a-z0-9.-]{0,62}:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_DATASET_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$")
_INSTANCE_RE = re.compile(r"^[a-z0-9.:-]+:[a-z0-9-]+:[a-z0-9-]+$")
_SECRET_RE = re.compile(r"^projects/[^/]+/secrets/[A-Za-z0-9_-]+/versions/[A-Za-z0-9_-]+$")
_TOPIC_RE = re.compile(r"^projects/[^/]+/topics/[A-Za-z][A-Za-z0-9._~%+-]{2,254}$")

#: Every variable the code reads. Terraform's env block is checked against this set.
KNOWN_ENV_VARS: frozenset[str] = frozenset(
    {
        "BIGQUERY_PROJECT",
        "BIGQUERY_LOCATION",
        "BIGQUERY_API_ENDPOINT",
        "SALESFORCE_DATASET",
        "GONG_DATASET",
        "DATABASE_URL",
        "INSTANCE_CONNECTION_NAME",
        "DB_USER",
        "DB_NAME",
        "DB_PASSWORD_SECRET",
        "DB_IAM_AUTH",
        "DB_IP_TYPE",
        "CLOUD_SQL_ADMIN_API_ENDPOINT",
        "SECRET_MANAGER_API_ENDPOINT",
        "SYNC_TOPIC",
        "SYNC_PAGE_SIZE",
        "SYNC_TIME_BUDGET_SECONDS",
        "SYNC_FUNCTION_TIMEOUT_SECONDS",
        "SYNC_FUNCTION_MEMORY",
        "SYNC_LOOKBACK_SECONDS",
        "SYNC_LEASE_SECONDS",
        "SYNC_MAX_PAGES",
        "SYNC_AUTO_MIGRATE",
        "SYNC_REJECTION_RETENTION_DAYS",
        "SYNC_DELETE_GUARD_PERCENT",
        "SYNC_DELETE_GUARD_MIN_ROWS",
        "SYNC_DEAD_LETTER_SUBSCRIPTION",  # python -m sync dead-letters only (sync/ops/deadletters.py)
        # The Fivetran webhook function only (sync/core/webhook_config.py).
        "FIVETRAN_WEBHOOK_SECRET",
        "FIVETRAN_WEBHOOK_CONNECTORS",
        "FIVETRAN_WEBHOOK_GROUPS",
        "FIVETRAN_WEBHOOK_MAX_AGE_SECONDS",
        "LOG_LEVEL",
    }
)

# Variables whose value can carry a password or credentials (a URL's user:password@ part, or
# a password pasted where a secret's resource name belongs): errors name them, never echo them.
_NEVER_ECHOED = frozenset(
    {
        "DATABASE_URL",
        "DB_PASSWORD_SECRET",
        "FIVETRAN_WEBHOOK_SECRET",
        "BIGQUERY_API_ENDPOINT",
        "CLOUD_SQL_ADMIN_API_ENDPOINT",
        "SECRET_MANAGER_API_ENDPOINT",
    }
)

# Why these defaults: docs/operations.md, "Deletes are guarded".
DEFAULT_DELETE_GUARD_PERCENT = 10.0
DEFAULT_DELETE_GUARD_MIN_ROWS = 100

# Integers in settings are written in ASCII digits only: Python's int() also takes other scripts'
# digits ("٣" is 3), underscores and surrounding spaces, none of which a deployment means.
_INTEGER_RE = re.compile(r"^-?[0-9]+$")

_Choice = TypeVar("_Choice", bound=enum.StrEnum)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class IpType(enum.StrEnum):
    """Which of the instance's addresses the connector dials (its ``ip_type``), chosen by ``DB_IP_TYPE``.

    ``public``: the instance's public IP. ``private``: its private IP on a VPC peered through private
    services access. ``psc``: its Private Service Connect endpoint. The function reaches the last two
    through Direct VPC egress (terraform/network.tf).
    """

    PUBLIC = "public"
    PRIVATE = "private"
    PSC = "psc"


@dataclass(frozen=True)
class CloudSqlSettings:
    """How to reach Cloud SQL through the connector."""

    instance_connection_name: str
    user: str
    database: str
    password_secret: str | None
    iam_auth: bool
    ip_type: IpType = IpType.PUBLIC
    # Test-only: the local stand-ins of the Cloud SQL Admin API and Secret Manager. Unset
    # (the default, and always in a deployment) means Google's own endpoints.
    admin_api_endpoint: str | None = None
    secret_manager_endpoint: str | None = None


@dataclass(frozen=True)
class DeleteGuardSettings:
    """When a run's deletes are held for an operator (``sync/postgres/guard.py``)."""

    # More than this share of the live replica (percent) in one run is held; None: the guard is off.
    percent: float | None = DEFAULT_DELETE_GUARD_PERCENT
    # Fewer deletes than this in one run are never held, whatever share of a small replica they are.
    min_rows: int = DEFAULT_DELETE_GUARD_MIN_ROWS


@dataclass(frozen=True)
class Settings:
    """Validated configuration for one process."""

    bigquery_project: str
    salesforce_dataset: str = "salesforce"
    gong_dataset: str = "gongio_ft"
    bigquery_location: str | None = None
    bigquery_api_endpoint: str | None = None
    database_url: DatabaseUrl | None = None
    cloud_sql: CloudSqlSettings | None = None
    sync_topic: str | None = None
    page_size: int = 2000
    time_budget_seconds: float = 300.0
    # The platform's timeout (the function's timeout_seconds); the budget plus the reserve for
    # commit and publish must fit in it (sync/core/deadline.py). 540 s is the 2nd-gen event maximum.
    function_timeout_seconds: int = 540
    # The instance's memory (the function's available_memory) in MiB; a page must fit it with
    # headroom (sync/core/memory.py). None where no platform limit applies (the CLI, tests).
    function_memory_mib: float | None = None
    lookback_seconds: int = 3600
    lease_seconds: int = 600
    max_pages: int = 10_000
    # False for a login that may not alter the schema (the function's): it only requires the
    # schema to be current (sync/postgres/schema.py require_current).
    auto_migrate: bool = True
    rejection_retention_days: int = 30
    delete_guard: DeleteGuardSettings = DeleteGuardSettings()
    log_level: str = "INFO"

    @property
    def page_budget_mib(self) -> float | None:
        """What a page's rows may cost at peak in this instance's memory (``sync/core/memory.py``)."""
        return memory.page_budget_mib(self.function_memory_mib)

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        require_topic: bool = False,
        require_source: bool = True,
        require_database: bool = True,
    ) -> Settings:
        """Build settings from an environment mapping.

        Args:
            env: Usually ``os.environ``; tests pass a plain dict.
            require_topic: True for the Cloud Function, which must publish continuations.
            require_source: False for commands that never read BigQuery (``status``, ``runs``):
                ``BIGQUERY_PROJECT`` may then be unset (``bigquery_project`` is ``""``), and
                is still validated when set.
            require_database: False for commands that never open Postgres (``publish``).

        Raises:
            ConfigurationError: naming every missing or malformed variable.
        """
        r = _EnvReader(env)
        project = r.matching("BIGQUERY_PROJECT", _PROJECT_RE, "a GCP project id")
        if require_source and r.get("BIGQUERY_PROJECT") is None:
            r.problems.append("BIGQUERY_PROJECT is required")
        endpoint = r.endpoint("BIGQUERY_API_ENDPOINT")
        database_url = r.database_url("DATABASE_URL")
        cloud_sql = _cloud_sql(r)
        _check_database_choice(r, required=require_database)

        topic = r.matching("SYNC_TOPIC", _TOPIC_RE, "projects/PROJECT/topics/TOPIC")
        if require_topic and r.get("SYNC_TOPIC") is None:
            r.problems.append("SYNC_TOPIC is required (projects/PROJECT/topics/TOPIC)")

        settings = cls(
            bigquery_project=project or "",
            salesforce_dataset=r.matching("SALESFORCE_DATASET", _DATASET_RE, "a BigQuery dataset name") or "salesforce",
            gong_dataset=r.matching("GONG_DATASET", _DATASET_RE, "a BigQuery dataset name") or "gongio_ft",
            bigquery_location=r.get("BIGQUERY_LOCATION"),
            bigquery_api_endpoint=endpoint,
            database_url=database_url,
            cloud_sql=cloud_sql,
            sync_topic=topic,
            page_size=r.integer("SYNC_PAGE_SIZE", 2000, 1, 50_000),
            time_budget_seconds=float(r.integer("SYNC_TIME_BUDGET_SECONDS", 300, 1, 3600)),
            function_timeout_seconds=r.integer("SYNC_FUNCTION_TIMEOUT_SECONDS", 540, 1, 3600),
            function_memory_mib=_function_memory(r),
            lookback_seconds=r.integer("SYNC_LOOKBACK_SECONDS", 3600, 0, 30 * 86400),
            lease_seconds=r.integer("SYNC_LEASE_SECONDS", 600, 1, 7200),
            max_pages=r.integer("SYNC_MAX_PAGES", 10_000, 1, 1_000_000),
            auto_migrate=r.boolean("SYNC_AUTO_MIGRATE", default=True),
            rejection_retention_days=r.integer("SYNC_REJECTION_RETENTION_DAYS", 30, 1, 3650),
            delete_guard=_delete_guard(r),
            log_level=_log_level(r),
        )
        r.problems += _budget_problems(settings) + _memory_problems(settings)
        if r.problems:
            raise ConfigurationError(r.problems)
        return settings


def _log_level(r: _EnvReader) -> str:
    level = (r.get("LOG_LEVEL") or "INFO").upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        r.problems.append(f"LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, got {level!r}")
    return level


def _delete_guard(r: _EnvReader) -> DeleteGuardSettings:
    min_rows = r.integer("SYNC_DELETE_GUARD_MIN_ROWS", DEFAULT_DELETE_GUARD_MIN_ROWS, 1, 100_000_000)
    raw = r.get("SYNC_DELETE_GUARD_PERCENT")
    if raw is None:
        return DeleteGuardSettings(min_rows=min_rows)
    if raw.lower() == "off":
        return DeleteGuardSettings(None, min_rows)
    try:
        percent = float(raw.removesuffix("%"))
    except ValueError:
        percent = math.nan
    if not 0 < percent <= 100:  # NaN fails too
        r.problems.append(f"SYNC_DELETE_GUARD_PERCENT must be a percentage above 0 and at most 100, or off, got {raw!r}")
        return DeleteGuardSettings(min_rows=min_rows)
    return DeleteGuardSettings(percent, min_rows)


class _EnvReader:
    """Reads variables and collects every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.problems: list[str] = []

    def get(self, name: str) -> str | None:
        value = self._env.get(name)
        return value.strip() if value is not None and value.strip() != "" else None

    def matching(self, name: str, pattern: re.Pattern[str], hint: str) -> str | None:
        value = self.get(name)
        if value is not None and not pattern.match(value):
            self.problems.append(f"{name} must be {hint}{_got(name, value)}")
            return None
        return value

    def endpoint(self, name: str) -> str | None:
        value = self.get(name)
        if value is not None and not re.match(r"^https?://\S+$", value):
            self.problems.append(f"{name} must be an http(s) URL{_got(name, value)}")
            return None
        return value

    def database_url(self, name: str) -> DatabaseUrl | None:
        value = self.get(name)
        if value is None:
            return None
        try:
            return parse_database_url(value)
        except ConfigurationError as err:
            self.problems.extend(err.problems)
            return None

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.get(name)
        if raw is None:
            return default
        if not _INTEGER_RE.match(raw):
            self.problems.append(f"{name} must be an integer written in the digits 0-9{_got(name, raw)}")
            return default
        value = int(raw)
        if not low <= value <= high:
            self.problems.append(f"{name} must be between {low} and {high}, got {value}")
            return default
        return value

    def choice(self, name: str, choices: type[_Choice], default: _Choice) -> _Choice:
        raw = self.get(name)
        if raw is None:
            return default
        try:
            return choices(raw.lower())
        except ValueError:
            valid = ", ".join(c.value for c in choices)
            self.problems.append(f"{name} must be one of {valid}{_got(name, raw)}")
            return default

    def boolean(self, name: str, *, default: bool) -> bool:
        raw = self.get(name)
        if raw is None:
            return default
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        self.problems.append(f"{name} must be true or false{_got(name, raw)}")
        return default


def _budget_problems(s: Settings) -> list[str]:
    """The work budget plus the commit-and-publish reserve must end before the platform's kill."""
    room = s.function_timeout_seconds - RESERVE_SECONDS
    if s.time_budget_seconds <= room:
        return []
    return [
        f"SYNC_TIME_BUDGET_SECONDS={s.time_budget_seconds:.0f} plus the {RESERVE_SECONDS:.0f} s reserved for the commit"
        f" and the continuation publish exceeds SYNC_FUNCTION_TIMEOUT_SECONDS={s.function_timeout_seconds}: lower"
        f" SYNC_TIME_BUDGET_SECONDS to at most {max(room, 0):.0f} (Terraform: time_budget_seconds, or leave it null to"
        " derive it) or raise SYNC_FUNCTION_TIMEOUT_SECONDS (Terraform: function_timeout_seconds)"
    ]


def _function_memory(r: _EnvReader) -> float | None:
    raw = r.get("SYNC_FUNCTION_MEMORY")
    if raw is None:
        return None
    mib = memory.parse_memory_mib(raw)
    if mib is None:
        hint = "a number with unit M, Mi, G or Gi, e.g. 512Mi"
        r.problems.append(f"SYNC_FUNCTION_MEMORY must be {hint}{_got('SYNC_FUNCTION_MEMORY', raw)}")
    return mib


def _memory_problems(s: Settings) -> list[str]:
    """A page's modelled peak, with headroom, must fit the instance: an instance over its memory is killed."""
    if s.function_memory_mib is None:
        return []
    need = memory.peak_mib(s.page_size) * memory.HEADROOM
    if need <= s.function_memory_mib:
        return []
    largest = memory.largest_page(s.function_memory_mib)
    lower = f"lower SYNC_PAGE_SIZE to at most {largest}" if largest >= 1 else "no page size fits"
    return [
        f"SYNC_PAGE_SIZE={s.page_size} needs about {memory.peak_mib(s.page_size):.0f} MiB at peak, {need:.0f} MiB with"
        f" {memory.HEADROOM - 1:.0%} headroom, more than SYNC_FUNCTION_MEMORY={s.function_memory_mib:.0f} MiB:"
        f" {lower} (Terraform: page_size) or raise SYNC_FUNCTION_MEMORY (Terraform: function_memory)"
    ]


def _got(name: str, value: str) -> str:
    if name in _NEVER_ECHOED:
        return " (the value is not shown: it may hold a password or credentials)"
    return f", got {value!r}"


def _check_database_choice(r: _EnvReader, *, required: bool) -> None:
    """Exactly one way to reach Postgres: a URL or the Cloud SQL connector (none at all only when not required)."""
    has_cloud_sql_vars = any(r.get(n) for n in ("INSTANCE_CONNECTION_NAME", "DB_USER", "DB_NAME"))
    if required and r.get("DATABASE_URL") is None and not has_cloud_sql_vars:
        r.problems.append(
            "DATABASE_URL or INSTANCE_CONNECTION_NAME+DB_USER+DB_NAME (+DB_PASSWORD_SECRET or DB_IAM_AUTH=true) is required"
        )
    if r.get("DATABASE_URL") is not None and r.get("INSTANCE_CONNECTION_NAME") is not None:
        r.problems.append("DATABASE_URL and INSTANCE_CONNECTION_NAME are mutually exclusive; set one")


def _cloud_sql(r: _EnvReader) -> CloudSqlSettings | None:
    if r.get("INSTANCE_CONNECTION_NAME") is None:
        # The webhook reads its signing key from Secret Manager whatever the database path.
        stand_ins: tuple[str, ...] = ("DB_IP_TYPE", "CLOUD_SQL_ADMIN_API_ENDPOINT")
        if r.get("FIVETRAN_WEBHOOK_SECRET") is None:
            stand_ins += ("SECRET_MANAGER_API_ENDPOINT",)
        for name in stand_ins:
            if r.get(name) is not None:
                r.problems.append(f"{name} is only used with INSTANCE_CONNECTION_NAME; unset it")
        return None
    instance = r.matching("INSTANCE_CONNECTION_NAME", _INSTANCE_RE, "PROJECT:REGION:INSTANCE")
    user, database = r.get("DB_USER"), r.get("DB_NAME")
    secret = r.matching("DB_PASSWORD_SECRET", _SECRET_RE, "projects/P/secrets/S/versions/V")
    iam = r.boolean("DB_IAM_AUTH", default=False)
    ip_type = r.choice("DB_IP_TYPE", IpType, IpType.PUBLIC)
    for name, value in (("DB_USER", user), ("DB_NAME", database)):
        if value is None:
            r.problems.append(f"{name} is required with INSTANCE_CONNECTION_NAME")
    if iam and r.get("DB_PASSWORD_SECRET") is not None:
        r.problems.append("DB_PASSWORD_SECRET must be unset when DB_IAM_AUTH=true")
    if not iam and r.get("DB_PASSWORD_SECRET") is None:
        r.problems.append("DB_PASSWORD_SECRET or DB_IAM_AUTH=true is required with INSTANCE_CONNECTION_NAME")
    admin_api = r.endpoint("CLOUD_SQL_ADMIN_API_ENDPOINT")
    secret_manager = r.endpoint("SECRET_MANAGER_API_ENDPOINT")
    if instance is None or user is None or database is None:
        return None
    return CloudSqlSettings(instance, user, database, secret, iam, ip_type, admin_api, secret_manager)
