"""Settings of the Fivetran webhook function (``main.py::fivetran_webhook``), validated up front.

The webhook also reads the database and topic settings (:class:`sync.core.config.Settings`); these
are its own. As there, one :class:`ConfigurationError` names every offending variable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sync.core.config import _SECRET_RE, _EnvReader
from sync.core.errors import ConfigurationError

# Fivetran ids (connector ids such as "decent_dropsy", group ids such as "projected_sickle").
_FIVETRAN_ID_RE = re.compile(r"^[A-Za-z0-9_]{1,100}$")

MAX_AGE_DEFAULT = 3600


@dataclass(frozen=True)
class WebhookSettings:
    """Where the signing key is, which syncs may start ours, and how old a request may be."""

    secret: str
    # None: any connector (group). A set: only these ids start a sync.
    connectors: frozenset[str] | None = None
    groups: frozenset[str] | None = None
    # A sync_end whose ``created`` is older than this is answered 200 and starts nothing.
    max_age_seconds: int = MAX_AGE_DEFAULT
    # Test-only: the Secret Manager stand-in's URL.
    secret_manager_endpoint: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WebhookSettings:
        """Build the webhook's settings from an environment mapping.

        Raises:
            ConfigurationError: naming every missing or malformed variable.
        """
        r = _EnvReader(env)
        secret = r.matching("FIVETRAN_WEBHOOK_SECRET", _SECRET_RE, "projects/P/secrets/S/versions/V")
        if r.get("FIVETRAN_WEBHOOK_SECRET") is None:
            r.problems.append("FIVETRAN_WEBHOOK_SECRET is required (projects/P/secrets/S/versions/V)")
        settings = cls(
            secret=secret or "",
            connectors=_ids(r, "FIVETRAN_WEBHOOK_CONNECTORS", "connector"),
            groups=_ids(r, "FIVETRAN_WEBHOOK_GROUPS", "group"),
            max_age_seconds=r.integer("FIVETRAN_WEBHOOK_MAX_AGE_SECONDS", MAX_AGE_DEFAULT, 60, 86_400),
            secret_manager_endpoint=r.endpoint("SECRET_MANAGER_API_ENDPOINT"),
        )
        if r.problems:
            raise ConfigurationError(r.problems)
        return settings


def _ids(r: _EnvReader, name: str, kind: str) -> frozenset[str] | None:
    """A comma-separated allow list; unset or blank means any."""
    raw = r.get(name)
    if raw is None:
        return None
    ids = [part.strip() for part in raw.split(",")]
    bad = [i for i in ids if not _FIVETRAN_ID_RE.match(i)]
    if bad:
        r.problems.append(
            f"{name} must be a comma-separated list of Fivetran {kind} ids (letters, digits, underscores),"
            f" got {raw!r}; leave it unset to accept any {kind}"
        )
        return None
    return frozenset(ids)
