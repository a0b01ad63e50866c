"""One webhook request, from what arrived over HTTP to the answer. No framework, no I/O of its own.

The checks run cheapest first, and nothing about the secret or the body is said in an answer or a
log line: the method (405), the content type (415), the size (413), then the signature (401, no
detail), then the body (400 for a signed body that is not an event). A signed event is answered
200 whether or not it starts a sync, so Fivetran does not retry it; asking for the tick
(``wake``) is the only step that can fail, and then the caller answers 5xx and Fivetran retries.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sync.core.webhook_config import WebhookSettings
from sync.webhook.events import Event, PayloadError, decide, parse
from sync.webhook.signature import is_valid

log = logging.getLogger(__name__)

# Fivetran's bodies are a few hundred bytes; anything near this is not one of them.
MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class Answer:
    """The HTTP status and, for the log line, what the request came to."""

    status: int
    outcome: str


class Webhook:
    """Answers Fivetran's webhook requests.

    Args:
        settings: the allow lists and the age limit.
        key: the signing key (read from Secret Manager once per instance by the caller).
        wake: records the request and publishes a tick unless one is outstanding; returns
            whether it published (``sync/run/wakeups.py::request``).
        clock: the current time (tests pass a fixed one).
    """

    def __init__(
        self,
        settings: WebhookSettings,
        key: Callable[[], bytes],
        wake: Callable[[], bool],
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._settings = settings
        self._key = key
        self._wake = wake
        self._clock = clock

    def handle(self, method: str, content_type: str | None, body: bytes | None, signature: str | None) -> Answer:
        """Answer one request; ``body`` is None when it was longer than :data:`MAX_BODY_BYTES`."""
        answer, event = self._answer(method, content_type, body, signature)
        fields = {
            "event": "webhook_answered",
            "status": answer.status,
            "outcome": answer.outcome,
            "fivetran_event": event.event if event else None,
            "connector_id": event.connector_id if event else None,
            "group_id": event.group_id if event else None,
        }
        # A refused request is the sender's doing, not the operator's: never above WARNING.
        log.log(
            logging.INFO if answer.status == 200 else logging.WARNING,
            "webhook %s: %s",
            answer.status,
            answer.outcome,
            extra=fields,
        )
        return answer

    def _answer(
        self, method: str, content_type: str | None, body: bytes | None, signature: str | None
    ) -> tuple[Answer, Event | None]:
        if method != "POST":
            return Answer(405, "method_not_allowed"), None
        if (content_type or "").split(";")[0].strip().lower() != "application/json":
            return Answer(415, "not_json"), None
        if body is None:
            return Answer(413, "too_large"), None
        if not is_valid(self._key(), body, signature):
            return Answer(401, "bad_signature"), None
        try:
            event = parse(body)
        except PayloadError:
            return Answer(400, "not_an_event"), None
        decision = decide(event, self._settings, self._clock())
        if not decision.tick:
            return Answer(200, decision.reason), event
        published = self._wake()
        return Answer(200, "tick_published" if published else "tick_outstanding"), event
