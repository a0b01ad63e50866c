"""Drive ``main.sync_opportunities`` through functions-framework, as Cloud Functions does."""

from __future__ import annotations

import base64
import json
import logging
import sys
from typing import Any

import functions_framework

import main as entry
from sync.core.logs import JsonFormatter
from sync.postgres import db

TOPIC = "projects/local-project/topics/sync"


def client(monkeypatch: Any, env_vars: dict[str, str]) -> Any:
    """A test client for a fresh cold start with exactly ``env_vars`` as the function's settings."""
    for key in list(entry.os.environ):
        if key in env_vars or key.startswith(("SYNC_", "DB_", "BIGQUERY_", "DATABASE_URL", "INSTANCE_", "CLOUD_SQL_", "SECRET_")):
            monkeypatch.delenv(key, raising=False)
    for key, value in env_vars.items():
        monkeypatch.setenv(key, value)
    cold_start(monkeypatch)
    app = functions_framework.create_app("sync_opportunities", str(entry.__file__), "cloudevent")
    return app.test_client()


def cold_start(monkeypatch: Any) -> None:
    """Forget the process-wide runtime, connector and cached password: the next push is a cold start."""
    db.close()
    monkeypatch.setattr(entry, "_runtime", None)
    # functions-framework loads main.py again as a new module under the same name; the app runs
    # that one, so its runtime is the one to forget.
    served = sys.modules.get("main")
    if served is not None and served is not entry:
        monkeypatch.setattr(served, "_runtime", None)


def push(test_client: Any, body: bytes | dict[str, Any], *, message_id: str = "m-1") -> Any:
    """POST one Pub/Sub message as a binary-mode CloudEvent."""
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    data = {
        "message": {"data": base64.b64encode(raw).decode(), "messageId": message_id},
        "subscription": "projects/local-project/subscriptions/sync",
    }
    headers = {
        "ce-specversion": "1.0",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-source": "//pubsub.googleapis.com/projects/local-project/topics/sync",
        "ce-id": message_id,
    }
    return test_client.post("/", headers=headers, data=json.dumps(data), content_type="application/json")


def rendered(records: list[logging.LogRecord]) -> list[str]:
    """Each record as the function writes it to Cloud Logging: one JSON line, traceback included."""
    formatter = JsonFormatter()
    return [formatter.format(r) for r in records]
