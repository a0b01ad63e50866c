"""Pub/Sub payloads: round trips and precise rejections."""

from __future__ import annotations

import base64
import datetime as dt
import uuid

import pytest

from sync.core.errors import MessageError
from sync.core.messages import Message, MessageType, decode, encode, from_cloud_event_data

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
        (b"[" * 1000 + b"]" * 1000, "nested more than 32 deep"),  # a RecursionError before Python 3.12, under 2 KB
        (b'{"a":' * 100 + b"[" * 950 + b"]" * 950 + b"}" * 100, "nested more than 32 deep"),  # objects and arrays mixed
        (b'{"type": "continue", "run_id": ' + b"[" * 900 + b"]" * 900 + b"}", "nested more than 32 deep"),
        (b'{"type": "continue", "run_id": [[1]]}', "field 'run_id' must be a string"),  # shallow: named by field
        (b'{"type": {"nested": 1}}', "field 'type' must be a string, number, boolean or null, got dict"),
        (b'{"type": "continue", "v": 1.0}', "version 1.0 is not supported (expected the integer 1)"),  # 1.0 == 1
        (b'{"type": "continue", "v": true}', "version True is not supported"),  # True == 1 as well
        (b'{"type": "continue", "v": "1"}', "version '1' is not supported"),
        (b'{"type": "continue"}', "version None is not supported"),
    ],
)
def test_malformed_bodies_are_rejected_with_the_reason(body, error):
    with pytest.raises(MessageError, match=error.replace("(", r"\(").replace(")", r"\)")):
        decode(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"type": "tick", "note": "' + b"[" * 100 + b'"}',  # brackets inside a string are text
        b'{"type": "tick", "note": "\\"' + b"{" * 100 + b'"}',  # so are those after an escaped quote
    ],
)
def test_brackets_inside_strings_do_not_count_as_nesting(body):
    assert decode(body) == Message.tick()


def test_cloud_event_data_unwraps_pubsub():
    data = {"message": {"data": base64.b64encode(b'{"type":"tick"}').decode(), "messageId": "42"}, "subscription": "s"}
    assert from_cloud_event_data(data) == (b'{"type":"tick"}', "42", {})
    data["message"]["attributes"] = {"sync_requested_at": "2026-12-01T10:00:00+00:00"}
    assert from_cloud_event_data(data)[2] == {"sync_requested_at": "2026-12-01T10:00:00+00:00"}


@pytest.mark.parametrize(
    ("attributes", "requested_at"),
    [
        (None, None),  # published by an operator: remembered by its message id only
        ({"sync_requested_at": "2026-12-01T10:00:00.123+00:00"}, dt.datetime(2026, 12, 1, 10, 0, 0, 123000, tzinfo=dt.UTC)),
        ({"sync_requested_at": "2026-12-01T10:00:00Z"}, dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC)),  # Pub/Sub's spelling
    ],
)
def test_a_replayed_full_resync_carries_when_it_was_first_requested(attributes, requested_at):
    assert decode(b'{"type":"full_resync"}', "7", attributes) == Message.full_resync("7", requested_at)


@pytest.mark.parametrize("raw", ["yesterday", "2026-12-01T10:00:00"])  # unreadable; no offset
def test_a_malformed_requested_at_is_refused(raw):
    with pytest.raises(MessageError, match="attribute sync_requested_at must be an ISO timestamp with a UTC offset"):
        decode(b'{"type":"full_resync"}', "7", {"sync_requested_at": raw})


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


def test_version_one_is_the_integer_one():
    body = b'{"type": "continue", "v": 1, "run_id": "00000000-0000-0000-0000-000000000005", "page": 2, "upper_bound": null}'
    assert decode(body) == Message.continuation(uuid.UUID(int=5), 2, None)


@pytest.mark.parametrize(
    ("message_id", "error"),
    [
        ("7" * 200_000, "message id is 200000 characters; the limit is 128"),  # a 200 KB id
        ("id with spaces", "has characters other than printable ASCII"),
        ("\x1b]0;PWNED\x07", "has characters other than printable ASCII"),  # terminal escapes
        ("", "is empty"),
    ],
)
def test_message_ids_are_bounded_and_printable(message_id, error):
    with pytest.raises(MessageError, match=error) as info:
        decode(b'{"type": "full_resync"}', message_id)
    assert len(str(info.value)) < 200
    assert "\x1b" not in str(info.value)


@pytest.mark.parametrize(
    "message_id",
    [
        "1215011316659232",  # what Pub/Sub assigns
        "cli-0b5a61bb-52a2-4b5e-9f5e-2c1f3c8b8f3e",  # what `python -m sync run --full-resync` uses
        "m" * 128,  # at the limit
    ],
)
def test_plausible_message_ids_are_kept(message_id):
    assert decode(b'{"type": "full_resync"}', message_id).message_id == message_id


@pytest.mark.parametrize(
    "body",
    [
        b'{"type": "' + b"x" * 3000 + b'"}',  # unknown type
        b'{"type": "continue", "v": 1, "run_id": "' + b"x" * 3000 + b'", "page": 2}',  # bad run id
        b'{"type": "continue", "v": 1, "run_id": "00000000-0000-0000-0000-000000000005", "page": 2,'
        b' "upper_bound": "' + b"y" * 3000 + b'"}',  # bad bound
    ],
)
def test_values_quoted_in_errors_are_bounded(body):
    with pytest.raises(MessageError) as info:
        decode(body)
    assert len(str(info.value)) < 250
    assert "(3002 chars)" in str(info.value)


def test_oversized_pubsub_data_is_refused_before_decoding():
    data = {"message": {"data": base64.b64encode(b"x" * 10_000).decode(), "messageId": "1"}}
    with pytest.raises(MessageError, match="base64 characters; the limit is 4096 bytes"):
        from_cloud_event_data(data)
