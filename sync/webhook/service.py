"""The webhook's process-wide parts, built on first use: the signing key, Postgres, the publisher.

The key is read from Secret Manager once per instance (a new secret version reaches new
instances; the runbook redeploys after a rotation). The database connection is the instance's
kept one, as the sync function keeps its own (``sync/postgres/idle.py``).
"""

from __future__ import annotations

import threading

from sync.core import secrets
from sync.core.config import Settings
from sync.core.errors import ConfigurationError
from sync.core.messages import Message
from sync.core.webhook_config import WebhookSettings
from sync.postgres.transaction import transaction
from sync.run import wakeups
from sync.run.publisher import PubSubPublisher
from sync.run.runtime import Runtime
from sync.webhook.handler import Webhook

# One request's database work: the row lock, the publish it waits for, the commit.
WAKE_SECONDS = wakeups.LOCK_WAIT_SECONDS + wakeups.WAKE_PUBLISH_TIMEOUT_SECONDS + 5.0


class WebhookService:
    """Builds the :class:`Webhook` an instance serves."""

    def __init__(self, settings: Settings, hook: WebhookSettings) -> None:
        if not settings.sync_topic:
            msg = "SYNC_TOPIC is required (projects/PROJECT/topics/TOPIC)"
            raise ConfigurationError([msg])
        self._hook = hook
        self._runtime = Runtime(settings)
        self._publisher = PubSubPublisher(settings.sync_topic, timeout=wakeups.WAKE_PUBLISH_TIMEOUT_SECONDS)
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def webhook(self) -> Webhook:
        return Webhook(self._hook, self.key, self.wake)

    def key(self) -> bytes:
        """The signing key, read once; a failed read is tried again by the next request."""
        with self._lock:
            if self._key is None:
                value = secrets.access(
                    self._hook.secret, variable="FIVETRAN_WEBHOOK_SECRET", endpoint=self._hook.secret_manager_endpoint
                )
                if not value:
                    msg = "FIVETRAN_WEBHOOK_SECRET names an empty secret version: add the webhook's secret as a new version"
                    raise ConfigurationError([msg])
                self._key = value.encode("utf-8")
            return self._key

    def wake(self) -> bool:
        """Record the request and publish a tick unless one is outstanding (``sync/run/wakeups.py``)."""
        self._runtime.ensure_schema()
        idle = self._runtime.connections()
        conn = idle.take()
        failed = False
        try:
            with transaction(conn, within=WAKE_SECONDS, lock_wait=wakeups.LOCK_WAIT_SECONDS):
                return wakeups.request(conn, lambda: self._publisher.publish(Message.tick()))
        except BaseException:
            failed = True
            raise
        finally:
            idle.give_back(conn, failed=failed)
