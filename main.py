"""Cloud Functions entry points: adapters from a Pub/Sub CloudEvent to one pipeline page
(``sync_opportunities``), and from Fivetran's webhook to a tick (``fivetran_webhook``, at the end).

Returning acknowledges the message; any non-2xx answer makes Pub/Sub redeliver it with backoff.
How each outcome is answered and logged (the runbook in terraform/README.md keys on this):

- success, or a permanent failure (bad message, a source that can never be read): 200, ack.
  A permanent failure is logged at ERROR with its traceback; a bad configuration at CRITICAL.
- another invocation holds the run (a continuation or full resync arrived early): 429 and one
  INFO line ``event=run_busy``. Expected under load; no traceback.
- a classified transient failure (connection reset, serialization failure, an API's 5xx): 503
  and one WARNING line with the SQLSTATE or HTTP status; no traceback.
- anything unrecognised: 500 and one ERROR line with the traceback.

The non-2xx answers are raised as werkzeug ``HTTPException``\\ s, which Flask turns into a
response without logging ``Exception on / [POST]``; that log line (a traceback at ERROR, so an
Error Reporting event) is kept for failures a human should look at, and written here, once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import flask
import functions_framework
from cloudevents.http.event import CloudEvent
from werkzeug.exceptions import InternalServerError, ServiceUnavailable, TooManyRequests

from sync.core import logs
from sync.core.config import Settings
from sync.core.errors import ConfigurationError, LeaseBusyError, PermanentError, SyncError, UnknownError, classify
from sync.core.messages import Message, decode, from_cloud_event_data
from sync.core.webhook_config import WebhookSettings
from sync.run.runtime import Runtime
from sync.webhook.handler import MAX_BODY_BYTES, Webhook
from sync.webhook.service import WebhookService
from sync.webhook.signature import HEADER

log = logging.getLogger("sync.main")
# Log as JSON from the first line, even if the configuration turns out to be invalid.
logs.configure("INFO")

_runtime: Runtime | None = None
_webhook: Webhook | None = None
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
    started = time.monotonic()  # the platform's timeout runs from here, so does the deadline
    message: Message | None = None
    try:
        body, message_id, attributes = from_cloud_event_data(cloud_event.data)
        message = decode(body, message_id or str(cloud_event["id"]), attributes)
        runtime = _get_runtime()
        runtime.ensure_schema()
        outcome = runtime.pipeline(runtime.publisher()).handle(message, started=started)
    except Exception as err:  # noqa: BLE001 - every failure is classified and answered below
        _answer_failure(classify(err), message)
        return
    log.debug("handled %s: %s", message.type.value, outcome.action, extra={"outcome": outcome.action})


def _answer_failure(failure: SyncError, message: Message | None) -> None:
    """Log a failure once, at the level its class deserves; return to ack, raise to redeliver."""
    about: dict[str, Any] = {
        "message_type": message.type.value if message else None,
        "run_id": str(message.run_id) if message and message.run_id else None,
        "page": message.page if message else None,
    }
    if isinstance(failure, LeaseBusyError):
        # Contention is the single-flight lease working: Pub/Sub brings the message back later.
        log.info(
            "sync run busy: another invocation holds the lease; this %s will be redelivered",
            about["message_type"],
            extra={"event": "run_busy", **about},
        )
        raise TooManyRequests(description="run busy; redeliver later") from failure
    fields = {
        "event": "page_failed",
        "retryable": failure.retryable,
        "error": str(failure),
        "sqlstate": failure.sqlstate,
        "http_status": failure.http_status,
        **about,
    }
    if isinstance(failure, ConfigurationError):
        # Every redelivery would fail the same way; ack and let the alert on CRITICAL fire.
        log.critical("%s", failure, extra=fields)
        return
    if isinstance(failure, PermanentError):
        log.error("permanent failure, message acknowledged: %s", failure, exc_info=failure, extra=fields)
        return
    if isinstance(failure, UnknownError):
        log.error("unexpected failure, message will be redelivered: %s", failure, exc_info=failure, extra=fields)
        raise InternalServerError(description="unexpected failure; redeliver") from failure
    log.warning("transient failure, message will be redelivered: %s", failure, extra=fields)
    raise ServiceUnavailable(description="transient failure; redeliver") from failure


def _get_webhook() -> Webhook:
    global _webhook
    with _runtime_lock:
        if _webhook is None:
            settings = Settings.from_env(os.environ, require_topic=True, require_source=False)
            hook = WebhookSettings.from_env(os.environ)
            logs.configure(settings.log_level)
            _webhook = WebhookService(settings, hook).webhook()
        return _webhook


@functions_framework.http
def fivetran_webhook(request: flask.Request) -> tuple[str, int]:
    """Fivetran's webhook: a signed, successful ``sync_end`` publishes a tick (``sync/webhook/``).

    Answers carry no body: a refused signature must not say why. A failure to record the request
    or publish the tick answers 5xx, and Fivetran retries for up to 24 hours.
    """
    try:
        body = _bounded_body(request)
        answer = _get_webhook().handle(request.method, request.mimetype, body, request.headers.get(HEADER))
    except Exception as err:  # noqa: BLE001 - every failure is classified and answered below
        return "", _webhook_failure(classify(err))
    return "", answer.status


def _bounded_body(request: flask.Request) -> bytes | None:
    """The raw body (the signature covers these exact bytes), or None past the size limit."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return None
    body = request.stream.read(MAX_BODY_BYTES + 1)
    return None if len(body) > MAX_BODY_BYTES else body


def _webhook_failure(failure: SyncError) -> int:
    """Log a webhook failure once; every one is answered 5xx so that Fivetran delivers it again."""
    fields = {"event": "webhook_failed", "retryable": failure.retryable, "error": str(failure)}
    if isinstance(failure, ConfigurationError):
        log.critical("%s", failure, extra=fields)
        return 500
    if isinstance(failure, UnknownError):
        log.error("webhook failed unexpectedly; Fivetran will retry: %s", failure, exc_info=failure, extra=fields)
        return 500
    log.warning("webhook failed; Fivetran will retry: %s", failure, extra=fields)
    return 503
