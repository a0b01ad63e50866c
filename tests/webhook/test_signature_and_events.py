"""The webhook's pure parts: the signature check, what a body asks for, its settings."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from standins import fivetran
from sync.core.errors import ConfigurationError
from sync.core.webhook_config import WebhookSettings
from sync.webhook.events import Decision, PayloadError, decide, parse
from sync.webhook.signature import is_valid, sign

KEY = b"k3y-of-the-webhook"
# A fixed body, so that the parametrized ids are the same in every pytest-xdist worker.
BODY = fivetran.encode(fivetran.event(created=dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)))
GOOD = sign(KEY, BODY)


def _flip(raw: bytes, at: int) -> bytes:
    return raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1 :]


@pytest.mark.parametrize(
    ("key", "body", "header", "valid"),
    [
        (KEY, BODY, GOOD, True),  # lower-case hex
        (KEY, BODY, GOOD.upper(), True),  # upper-case hex, as Fivetran sends it
        (KEY, BODY, f" {GOOD}\t", True),  # whitespace a proxy may add around a header value
        (b"another-key", BODY, GOOD, False),  # signed with another secret
        (KEY, _flip(BODY, 10), GOOD, False),  # one bit of the body changed after signing
        (KEY, BODY, _flip(GOOD.encode(), 0).decode(), False),  # one digit of the signature changed
        (KEY, BODY, f"sha256={GOOD}", False),  # GitHub's format: not what Fivetran sends
        (KEY, BODY, GOOD[:-2], False),  # truncated
        (KEY, BODY, None, False),  # header missing
        (KEY, BODY, "", False),  # header empty
        (KEY, b"", sign(KEY, b""), True),  # an empty body signs like any other (and then is no event)
        (b"", BODY, sign(b"", BODY), False),  # an empty key never verifies anything
        (KEY, BODY, GOOD + "é", False),  # non-ASCII in the header is compared, not a crash
    ],
)
def test_signature(key: bytes, body: bytes, header: str | None, valid: bool) -> None:
    assert is_valid(key, body, header) is valid


NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
ANY = WebhookSettings(secret="projects/p/secrets/s/versions/1")
ONLY = WebhookSettings(
    secret="projects/p/secrets/s/versions/1", connectors=frozenset({"ok_conn"}), groups=frozenset({"ok_group"})
)


def _ev(**kw: object) -> bytes:
    return fivetran.encode(fivetran.event(**{"created": NOW - dt.timedelta(seconds=5), **kw}))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "settings", "decision"),
    [
        (_ev(), ANY, Decision(tick=True, reason="sync_end")),  # the one event that starts a sync
        (_ev(name="test_event"), ANY, Decision(tick=False, reason="test_event")),  # sent when the webhook is created
        (_ev(name="sync_start"), ANY, Decision(tick=False, reason="not_sync_end")),  # nothing landed yet
        (_ev(status="FAILURE_WITH_TASK"), ANY, Decision(tick=False, reason="sync_not_successful")),
        (_ev(status="successful"), ANY, Decision(tick=True, reason="sync_end")),  # status case does not matter
        (_ev(connector_id="ok_conn", group_id="ok_group"), ONLY, Decision(tick=True, reason="sync_end")),
        (_ev(connector_id="other", group_id="ok_group"), ONLY, Decision(tick=False, reason="connector_not_allowed")),
        (_ev(connector_id="ok_conn", group_id="other"), ONLY, Decision(tick=False, reason="group_not_allowed")),
        # An old body replayed (or a retry after a day): past the age limit it starts nothing.
        (_ev(created=NOW - dt.timedelta(hours=2)), ANY, Decision(tick=False, reason="too_old")),
        (_ev(created=NOW - dt.timedelta(minutes=59)), ANY, Decision(tick=True, reason="sync_end")),
        (_ev(created=NOW + dt.timedelta(minutes=4)), ANY, Decision(tick=True, reason="sync_end")),  # clock skew
        (_ev(created=NOW + dt.timedelta(hours=1)), ANY, Decision(tick=False, reason="created_in_future")),
    ],
)
def test_decide(body: bytes, settings: WebhookSettings, decision: Decision) -> None:
    assert decide(parse(body), settings, NOW) == decision


def test_older_group_id_field_and_unreadable_created() -> None:
    old = {**json.loads(_ev()), "group_id": "ok_group"}
    del old["destination_group_id"]
    assert parse(json.dumps(old).encode()).group_id == "ok_group"  # bodies before destination_group_id
    for created in ("yesterday", "2026-12-07T12:00:00", 17):  # not a time; no zone; not a string
        body = json.dumps({**json.loads(_ev()), "created": created}).encode()
        assert decide(parse(body), ANY, NOW) == Decision(tick=False, reason="created_unreadable")


@pytest.mark.parametrize(
    "body",
    [
        b"",  # empty
        b"not json",
        b"\xff\xfe",  # not UTF-8
        b"[1, 2]",  # JSON, not an object
        b'{"created": "2026-12-07T12:00:00Z"}',  # no event
        b'{"event": 3}',  # event not a string
    ],
)
def test_a_body_that_is_no_event_is_refused(body: bytes) -> None:
    with pytest.raises(PayloadError):
        parse(body)


def test_settings_from_env() -> None:
    s = WebhookSettings.from_env(
        {
            "FIVETRAN_WEBHOOK_SECRET": "projects/p/secrets/fivetran-webhook/versions/latest",
            "FIVETRAN_WEBHOOK_CONNECTORS": "decent_dropsy, other_one",
            "FIVETRAN_WEBHOOK_MAX_AGE_SECONDS": "900",
        }
    )
    assert s.connectors == frozenset({"decent_dropsy", "other_one"})
    assert s.groups is None  # unset: any group
    assert s.max_age_seconds == 900


def test_bad_settings_name_every_variable() -> None:
    with pytest.raises(ConfigurationError) as info:
        WebhookSettings.from_env(
            {
                "FIVETRAN_WEBHOOK_CONNECTORS": "ok,,also ok",
                "FIVETRAN_WEBHOOK_GROUPS": "a;b",
                "FIVETRAN_WEBHOOK_MAX_AGE_SECONDS": "5",
            }
        )
    problems = "\n".join(info.value.problems)
    for name in (
        "FIVETRAN_WEBHOOK_SECRET is required",
        "FIVETRAN_WEBHOOK_CONNECTORS must be",
        "FIVETRAN_WEBHOOK_GROUPS must be",
        "FIVETRAN_WEBHOOK_MAX_AGE_SECONDS must be between 60 and 86400",
    ):
        assert name in problems
    with pytest.raises(ConfigurationError, match="FIVETRAN_WEBHOOK_SECRET must be projects/P/secrets/S/versions/V"):
        WebhookSettings.from_env({"FIVETRAN_WEBHOOK_SECRET": "the-secret-itself"})


def test_a_secret_pasted_in_place_of_its_name_is_not_echoed() -> None:
    with pytest.raises(ConfigurationError) as info:
        WebhookSettings.from_env({"FIVETRAN_WEBHOOK_SECRET": "the-secret-itself"})
    assert "the-secret-itself" not in str(info.value)
