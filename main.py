"""Cloud Functions entry point: an adapter from a Pub/Sub CloudEvent to one pipeline page.

Returning acknowledges the message; raising makes Pub/Sub redeliver it with backoff. So a
permanent failure (bad message, bad config, a source that can never be read) is logged and
returned, and only a retryable one is raised.
"""

from __future__ import annotations

import logging
import os
import threading

import functions_framework
from cloudevents.http.event import CloudEvent

from sync import logs
from sync.config import Settings
from sync.errors import ConfigurationError, PermanentError, SyncError, classify
from sync.messages import decode, from_cloud_event_data
from sync.runtime import Runtime

log = logging.getLogger("sync.main")
# Log as JSON from the first line, even if the configuration turns out to be invalid.
logs.configure("INFO")

_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def _get_runtime() -> Runtime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            settings = Settings.from_env(os.environ, require_topic=True)
            logs.configure(settings.log_level)
            _runtime = Runtime(settings)
        return _runtime


@functions_framework.cloud_event
def sync_opportunities(cloud_event: CloudEvent) -> None:
    """Handle one Pub/Sub message: tick, full_resync or continue."""
    try:
        body, message_id = from_cloud_event_data(cloud_event.data)
        message = decode(body, message_id or str(cloud_event["id"]))
        runtime = _get_runtime()
        runtime.ensure_schema()
        outcome = runtime.pipeline(runtime.publisher()).handle(message)
    except ConfigurationError as err:
        # Every redelivery would fail the same way; ack and let the alert on failed runs fire.
        log.critical("%s", err, extra={"event": "page_failed", "retryable": False, "error": str(err)})
        return
    except Exception as err:
        failure: SyncError = classify(err)
        fields = {"event": "page_failed", "retryable": failure.retryable, "error": str(failure)}
        if isinstance(failure, PermanentError):
            log.error(  # noqa: TRY400 - a classified, expected failure; the reason says it all
                "permanent failure, message acknowledged: %s", failure, extra=fields
            )
            return
        log.warning("retryable failure, message will be redelivered: %s", failure, extra=fields)
        raise failure from err
    log.debug("handled %s: %s", message.type.value, outcome.action, extra={"outcome": outcome.action})
