"""What a Fivetran webhook body asks for, and whether it starts a sync. Pure.

Only a successful ``sync_end`` from an allowed connector and group, created recently, starts a
sync. Everything else Fivetran sends is answered 200 (so it is not retried) and starts nothing:
``test_event`` (sent when the webhook is created, which fails unless it is answered), other events,
failed syncs, connectors or groups off the allow list, and bodies older than the age limit.

The age limit is the replay protection there is: Fivetran sends no timestamp header, but the body
carries ``created`` and the signature covers it, so an old body cannot be made new. Within the
limit a replayed ``sync_end`` can only ask for a tick, which coalesces with any outstanding one
(``sync/run/wakeups.py``) and runs an idempotent incremental sync.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sync.core.webhook_config import WebhookSettings

# A body stamped this far ahead of our clock is clock skew; further ahead it is not a real event.
CLOCK_SKEW = dt.timedelta(minutes=5)


class PayloadError(ValueError):
    """A signed body that is not a Fivetran event."""


@dataclass(frozen=True)
class Event:
    """The fields of a Fivetran webhook body this sync reads."""

    event: str
    connector_id: str | None = None
    group_id: str | None = None
    status: str | None = None
    created: dt.datetime | None = None


@dataclass(frozen=True)
class Decision:
    """Whether the event starts a sync, and why (a log field)."""

    tick: bool
    reason: str


def parse(body: bytes) -> Event:
    """Read the fields of a webhook body.

    Raises:
        PayloadError: the body is not a JSON object with a string ``event``.
    """
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        msg = f"the body is not JSON ({type(err).__name__} at byte {getattr(err, 'pos', 0)})"
        raise PayloadError(msg) from err
    if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
        msg = "the body must be a JSON object with a string 'event'"
        raise PayloadError(msg)
    data = payload.get("data")
    return Event(
        event=payload["event"],
        connector_id=_text(payload, "connector_id"),
        # Newer bodies name the destination group; older ones the group.
        group_id=_text(payload, "destination_group_id") or _text(payload, "group_id"),
        status=_text(data, "status") if isinstance(data, dict) else None,
        created=_created(payload.get("created")),
    )


def decide(event: Event, settings: WebhookSettings, now: dt.datetime) -> Decision:
    """Whether ``event`` starts a sync under ``settings`` at ``now``."""
    if event.event == "test_event":
        return Decision(tick=False, reason="test_event")
    if event.event != "sync_end":
        return Decision(tick=False, reason="not_sync_end")
    if (event.status or "").upper() != "SUCCESSFUL":
        return Decision(tick=False, reason="sync_not_successful")
    if settings.connectors is not None and event.connector_id not in settings.connectors:
        return Decision(tick=False, reason="connector_not_allowed")
    if settings.groups is not None and event.group_id not in settings.groups:
        return Decision(tick=False, reason="group_not_allowed")
    if event.created is None:
        return Decision(tick=False, reason="created_unreadable")
    if event.created > now + CLOCK_SKEW:
        return Decision(tick=False, reason="created_in_future")
    if now - event.created > dt.timedelta(seconds=settings.max_age_seconds):
        return Decision(tick=False, reason="too_old")
    return Decision(tick=True, reason="sync_end")


def _text(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    return value if isinstance(value, str) and value else None


def _created(value: object) -> dt.datetime | None:
    """``created`` as an aware time (Fivetran writes ISO 8601 in UTC with a ``Z``)."""
    if not isinstance(value, str):
        return None
    try:
        created = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return created if created.tzinfo is not None else None
