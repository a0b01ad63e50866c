"""Pub/Sub payloads: decode, validate, encode.

``{"type": "tick"}`` comes from Cloud Scheduler, ``{"type": "full_resync"}`` from operators,
and ``{"type": "continue", "v": 1, "run_id": …, "page": N, "upper_bound": …}`` from the
function itself. A continuation is only honoured if its run and page are exactly what the
database expects next, so a duplicate or late delivery cannot fork a second chain.

Anything a message carries can end up in a log line or in ``sync_status``, so what is kept is
bounded: the body by :data:`MAX_MESSAGE_BYTES`, the message id by :data:`MAX_MESSAGE_ID_CHARS`
and a printable-ASCII pattern, and every value quoted back in an error by :func:`excerpt`.

A ``full_resync`` is remembered by its Pub/Sub message id, which a redelivery keeps. A dead-lettered
message gets a new id on the dead-letter topic, and a replay another, so ``dead-letters --replay``
also carries when the request was first published (:data:`REQUESTED_AT_ATTRIBUTE`): a full resync
that started at or after that moment has served the request (``sync.run.state.resync_started``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sync.core.errors import MessageError

MAX_MESSAGE_BYTES = 4096
# Pub/Sub ids are decimal strings of about 16-20 digits; 128 leaves room for other publishers
# (the CLI's "cli-<uuid>") without letting a message id become a payload of its own.
MAX_MESSAGE_ID_CHARS = 128
_MESSAGE_ID_RE = re.compile(r"[\x21-\x7e]+")
_EXCERPT_CHARS = 64
CONTINUATION_VERSION = 1
# A valid message is one flat object (depth 1); this leaves room for a publisher's mistakes to be
# reported by name (a nested field) while keeping the parser and repr() shallow.
MAX_NESTING = 32
#: Message attribute: when the request a replayed message carries was first published (ISO 8601, UTC).
REQUESTED_AT_ATTRIBUTE = "sync_requested_at"


def excerpt(value: object) -> str:
    """``repr`` of a value from a message, cut to a size fit for a log line."""
    text = repr(value)
    if len(text) <= _EXCERPT_CHARS:
        return text
    return f"{text[:_EXCERPT_CHARS]}... ({len(text)} chars)"


class MessageType(enum.StrEnum):
    TICK = "tick"
    FULL_RESYNC = "full_resync"
    CONTINUE = "continue"

    @classmethod
    def _missing_(cls, value: object) -> MessageType:
        valid = ", ".join(m.value for m in cls)
        msg = f"unknown message type {excerpt(value)}; expected one of: {valid}"
        raise MessageError(msg)


@dataclass(frozen=True)
class Message:
    """A validated request for one invocation."""

    type: MessageType
    run_id: uuid.UUID | None = None
    page: int | None = None
    upper_bound: dt.datetime | None = None
    message_id: str | None = None
    # full_resync replayed from the dead letters: when it was first requested (REQUESTED_AT_ATTRIBUTE).
    requested_at: dt.datetime | None = None

    @classmethod
    def tick(cls) -> Message:
        return cls(MessageType.TICK)

    @classmethod
    def full_resync(cls, message_id: str | None = None, requested_at: dt.datetime | None = None) -> Message:
        return cls(MessageType.FULL_RESYNC, message_id=message_id, requested_at=requested_at)

    @classmethod
    def continuation(cls, run_id: uuid.UUID, page: int, upper_bound: dt.datetime | None) -> Message:
        return cls(MessageType.CONTINUE, run_id=run_id, page=page, upper_bound=upper_bound)


def encode(message: Message) -> bytes:
    """The JSON body to publish."""
    body: dict[str, Any] = {"type": message.type.value}
    if message.type is MessageType.CONTINUE:
        body.update(
            v=CONTINUATION_VERSION,
            run_id=str(message.run_id),
            page=message.page,
            upper_bound=message.upper_bound.isoformat() if message.upper_bound else None,
        )
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def decode(body: bytes, message_id: str | None = None, attributes: Mapping[str, str] | None = None) -> Message:
    """Parse and validate a message body (and the attributes a full_resync reads).

    Raises:
        MessageError: naming exactly what is wrong; the caller acks such messages.
    """
    if len(body) > MAX_MESSAGE_BYTES:
        msg = f"message is {len(body)} bytes; the limit is {MAX_MESSAGE_BYTES}"
        raise MessageError(msg)
    _check_message_id(message_id)
    if _depth(body) > MAX_NESTING:
        # A few KB of "[[[[..." exhausted the parser's recursion before Python 3.12 and parses on
        # 3.13; measured here, the refusal no longer depends on the interpreter.
        msg = f"message body is JSON nested more than {MAX_NESTING} deep; a message is one flat object"
        raise MessageError(msg)
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        msg = f"message body is not UTF-8 JSON: {err}"
        raise MessageError(msg) from err
    if not isinstance(payload, dict):
        msg = f"message body must be a JSON object, got {type(payload).__name__}"
        raise MessageError(msg)
    for key, value in payload.items():
        # Every field is a scalar; refusing nested values here also keeps a deeply nested one
        # away from str() and repr(), which recurse as deeply as the parser did.
        if isinstance(value, (dict, list)):
            msg = f"message field {excerpt(key)} must be a string, number, boolean or null, got {type(value).__name__}"
            raise MessageError(msg)
    if "type" not in payload:
        msg = f"message has no 'type' field; expected one of: {', '.join(m.value for m in MessageType)}"
        raise MessageError(msg)
    kind = MessageType(str(payload["type"]))
    if kind is MessageType.TICK:
        return Message.tick()
    if kind is MessageType.FULL_RESYNC:
        return Message.full_resync(message_id, _requested_at((attributes or {}).get(REQUESTED_AT_ATTRIBUTE)))
    return _continuation(payload)


def _depth(body: bytes) -> int:
    """How deeply the JSON text nests arrays and objects (brackets inside strings do not count)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            escaped, in_string = (False, True) if escaped else (byte == 0x5C, byte != 0x22)  # backslash, quote
        elif byte == 0x22:
            in_string = True
        elif byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif byte in b"]}":
            depth -= 1
    return deepest


def _requested_at(raw: str | None) -> dt.datetime | None:
    if raw is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(raw)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        msg = f"attribute {REQUESTED_AT_ATTRIBUTE} must be an ISO timestamp with a UTC offset, got {excerpt(raw)}"
        raise MessageError(msg)
    return moment


def _check_message_id(message_id: str | None) -> None:
    if message_id is None:
        return
    if len(message_id) > MAX_MESSAGE_ID_CHARS:
        msg = f"Pub/Sub message id is {len(message_id)} characters; the limit is {MAX_MESSAGE_ID_CHARS}"
        raise MessageError(msg)
    if not _MESSAGE_ID_RE.fullmatch(message_id):
        msg = f"Pub/Sub message id {excerpt(message_id)} is empty or has characters other than printable ASCII"
        raise MessageError(msg)


def _continuation(payload: Mapping[str, Any]) -> Message:
    version = payload.get("v")
    # Exactly the integer: JSON's 1.0 and true compare equal to 1 in Python.
    if type(version) is not int or version != CONTINUATION_VERSION:
        msg = f"continuation version {excerpt(version)} is not supported (expected the integer {CONTINUATION_VERSION})"
        raise MessageError(msg)
    try:
        run_id = uuid.UUID(str(payload.get("run_id")))
    except ValueError as err:
        msg = f"continuation run_id must be a UUID, got {excerpt(payload.get('run_id'))}"
        raise MessageError(msg) from err
    page = payload.get("page")
    if not isinstance(page, int) or isinstance(page, bool) or page < 2:
        msg = f"continuation page must be an integer >= 2, got {excerpt(page)}"
        raise MessageError(msg)
    raw_bound = payload.get("upper_bound")
    bound: dt.datetime | None = None
    if raw_bound is not None:
        try:
            bound = dt.datetime.fromisoformat(str(raw_bound))
        except ValueError as err:
            msg = f"continuation upper_bound must be an ISO timestamp, got {excerpt(raw_bound)}"
            raise MessageError(msg) from err
        if bound.tzinfo is None:
            msg = f"continuation upper_bound must carry a UTC offset, got {excerpt(raw_bound)}"
            raise MessageError(msg)
    return Message.continuation(run_id, page, bound)


def from_cloud_event_data(data: Any) -> tuple[bytes, str | None, dict[str, str]]:
    """Extract the raw body, message id and attributes from a Pub/Sub CloudEvent's ``data``."""
    if not isinstance(data, Mapping) or not isinstance(data.get("message"), Mapping):
        msg = "CloudEvent data has no Pub/Sub 'message' object"
        raise MessageError(msg)
    message = data["message"]
    encoded = message.get("data")
    if not isinstance(encoded, str) or not encoded:
        msg = "Pub/Sub message has no data"
        raise MessageError(msg)
    # Refuse an oversized body before decoding it: base64 is 4 characters per 3 bytes.
    if len(encoded) > 4 * -(-MAX_MESSAGE_BYTES // 3):
        msg = f"Pub/Sub message data is {len(encoded)} base64 characters; the limit is {MAX_MESSAGE_BYTES} bytes"
        raise MessageError(msg)
    try:
        body = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as err:
        msg = f"Pub/Sub message data is not base64: {err}"
        raise MessageError(msg) from err
    message_id = message.get("messageId") or message.get("message_id")
    attributes = message.get("attributes")
    kept = {str(k): str(v) for k, v in attributes.items()} if isinstance(attributes, Mapping) else {}
    return body, str(message_id) if message_id is not None else None, kept
