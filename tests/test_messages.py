"""Pub/Sub payloads: round trips and precise rejections."""

from __future__ import annotations

import base64
import datetime as dt
import uuid

import pytest

from sync.errors import MessageError
from sync.messages import Message, MessageType, decode, encode, from_cloud_event_data

BOUND = dt.datetime(2026, 11, 1, 8, 0, 0, 123456, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "message",
    [
        Message.tick(),
        Message.full_resync(),
        Message.continuation(uuid.UUID(int=5), 2, BOUND),  # microseconds survive the trip
        Message.continuation(uuid.UUID(int=5), 9, None),  # a run whose first page was empty
    ],
)
def test_round_trip(message):
    assert decode(encode(message)) == message


def test_full_resync_keeps_the_message_id_for_dedup():
    assert decode(b'{"type": "full_resync"}', "m-1").message_id == "m-1"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"not json", "not UTF-8 JSON"),
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"{}", "no 'type' field"),
        (b'{"type": "explode"}', "unknown message type 'explode'; expected one of: tick, full_resync, continue"),
        (b'{"type": "continue", "v": 2}', "version 2 is not supported"),
        (b'{"type": "continue", "v": 1, "run_id": "x", "page": 2}', "run_id must be a UUID"),
        (
            b'{"type": "continue", "v": 1, "run_id": "00000000-0000-0000-0000-000000000005", "page": 1}',
            "page must be an integer >= 2",
        ),
        (
            b'{"type": "continue", "v": 1, "run_id": "00000000-0000-0000-0000-000000000005", "page": true}',
            "page must be an integer",
        ),
        (
            b'{"type": "continue", "v": 1, "run_id": "00000000-0000-0000-0000-000000000005", "page": 3,'
            b' "upper_bound": "2026-11-01T08:00:00"}',
            "must carry a UTC offset",
        ),
        (b'{"type": "tick", "pad": "' + b"x" * 5000 + b'"}', "the limit is 4096"),
    ],
)
def test_malformed_bodies_are_rejected_with_the_reason(body, error):
    with pytest.raises(MessageError, match=error.replace("(", r"\(").replace(")", r"\)")):
        decode(body)


def test_cloud_event_data_unwraps_pubsub():
    data = {"message": {"data": base64.b64encode(b'{"type":"tick"}').decode(), "messageId": "42"}, "subscription": "s"}
    assert from_cloud_event_data(data) == (b'{"type":"tick"}', "42")


@pytest.mark.parametrize(
    "data",
    [None, {}, {"message": {}}, {"message": {"data": "***"}}],
)
def test_cloud_event_without_a_usable_message(data):
    with pytest.raises(MessageError):
        from_cloud_event_data(data)


def test_message_type_lists_valid_values():
    with pytest.raises(MessageError, match="tick, full_resync, continue"):
        MessageType("nope")
