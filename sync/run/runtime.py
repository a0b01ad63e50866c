"""Wires settings to real parts, once per process, lazily.

Cold start matters for a Cloud Function, so nothing here imports a Google client or opens a
connection until the first message needs it.
"""

from __future__ import annotations

import gc
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sync.core.config import Settings
from sync.postgres import db
from sync.postgres.idle import IdleConnection
from sync.postgres.schema import require_current, upgrade
from sync.run.pipeline import Pipeline, Publisher
from sync.run.publisher import PubSubPublisher

if TYPE_CHECKING:
    from sync.bigquery.source import BigQuerySource

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The process-wide parts built from one :class:`Settings`."""

    settings: Settings
    _source: BigQuerySource | None = None
    _publisher: PubSubPublisher | None = None
    _migrated: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _idle: IdleConnection | None = None

    def connect(self) -> db.Connection:
        return db.connect(self.settings)

    def connections(self) -> IdleConnection:
        """The instance's kept connection, shared by every pipeline it builds."""
        with self._lock:
            if self._idle is None:
                self._idle = IdleConnection(self.connect)
            return self._idle

    def source(self) -> BigQuerySource:
        with self._lock:
            if self._source is None:
                from sync.bigquery.source import BigQuerySource, make_client

                self._source = BigQuerySource(make_client(self.settings), self.settings)
                freeze_long_lived()
            return self._source

    def ensure_schema(self) -> None:
        """Once per process: apply pending migrations (``SYNC_AUTO_MIGRATE``, under the migration
        lock), or, for a login that does not migrate, require that none is pending."""
        with self._lock:
            if self._migrated:
                return
            conn = self.connect()
            try:
                if self.settings.auto_migrate:
                    applied = upgrade(conn).applied
                else:
                    require_current(conn)
                    applied = []
            finally:
                conn.close()
            if applied:
                log.info("schema migrated at start-up", extra={"event": "migrated", "versions": applied})
            self._migrated = True

    def pipeline(self, publisher: Publisher | None) -> Pipeline:
        idle = self.connections()
        return Pipeline(
            self.settings,
            self.source(),
            idle.take,
            publisher,
            release=lambda conn, failed: idle.give_back(conn, failed=failed),
        )

    def publisher(self) -> PubSubPublisher | None:
        """The continuation publisher, built once: its client holds channels and batch threads."""
        if not self.settings.sync_topic:
            return None
        with self._lock:
            if self._publisher is None:
                self._publisher = PubSubPublisher(self.settings.sync_topic)
            return self._publisher


def freeze_long_lived() -> None:
    """Move every object alive now into the permanent generation, once per process.

    The reader runs a full collection after each slice (``sync/bigquery/source.py``). A full
    collection walks every tracked object, and the imported client libraries alone are ~70k of
    them (~30 ms a slice). Frozen once the clients are built, they are never walked again, and
    a slice's garbage is found just the same. A process-wide policy, so it is set here, where
    the process is wired, not inside the reader.
    """
    if gc.get_freeze_count():
        return
    gc.collect()
    gc.freeze()
