"""``python -m sync dead-letters``: list what the push subscription gave up on, and replay it.

The push subscription moves a message to the dead-letter topic after ``max_delivery_attempts``
failed deliveries; the pull subscription ``SYNC_DEAD_LETTER_SUBSCRIPTION`` keeps it there.
Listing pulls without acknowledging and then releases the messages, so it changes nothing.
``--replay`` publishes each message's body (and its own attributes, not the ones Pub/Sub
added when dead-lettering) to ``SYNC_TOPIC`` and acknowledges it only after the publish is
confirmed: a crash in between replays it twice, which the function tolerates (a stale
continuation is ignored, a second tick finds nothing new, a full_resync is recognised by when it
was first requested, which the replay carries: :data:`sync.core.messages.REQUESTED_AT_ATTRIBUTE`).

Selection (``--id``, ``--type``, ``--older-than``, ``--newer-than``) applies to listing and to
replay alike; messages pulled and not selected are released at once, untouched.
``--replay --dry-run`` shows what a replay would publish and releases everything.

Only Pub/Sub is needed, so this command reads its two variables itself instead of the full
:class:`sync.core.config.Settings`, which would also demand BigQuery and database settings.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from sync.core.errors import ConfigurationError, MessageError
from sync.core.messages import REQUESTED_AT_ATTRIBUTE, MessageType, decode
from sync.ops import arguments, tables

SUBSCRIPTION_ENV = "SYNC_DEAD_LETTER_SUBSCRIPTION"
TOPIC_ENV = "SYNC_TOPIC"
_SUBSCRIPTION_RE = re.compile(r"^projects/[^/]+/subscriptions/[A-Za-z][A-Za-z0-9._~%+-]{2,254}$")
_TOPIC_RE = re.compile(r"^projects/[^/]+/topics/[A-Za-z][A-Za-z0-9._~%+-]{2,254}$")
# Pub/Sub adds these when it dead-letters a message; a replay must not carry them back.
_DEAD_LETTER_ATTRIBUTE_PREFIX = "CloudPubSubDeadLetter"
# One of them: when the message was published to the topic the push subscription reads.
_SOURCE_PUBLISH_TIME = "CloudPubSubDeadLetterSourceTopicPublishTime"
_REPLAYED_FROM = "replayed_from_dead_letter"
#: The type of a body the function cannot decode (it acknowledges such a message, so one is
#: dead-lettered only when published straight to the dead-letter topic).
INVALID = "invalid"
# A synchronous pull on an empty subscription waits until its deadline: wait a while for the
# first batch, briefly for the ones after it.
FIRST_PULL_TIMEOUT_SECONDS = 5.0
NEXT_PULL_TIMEOUT_SECONDS = 1.5
PUBLISH_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class DeadLetter:
    """One message in the dead-letter subscription."""

    message_id: str
    ack_id: str
    data: bytes
    attributes: dict[str, str]
    published: str

    @property
    def delivery_attempts(self) -> str | None:
        return self.attributes.get("CloudPubSubDeadLetterSourceDeliveryCount")

    @property
    def type(self) -> str:
        """The message's type (``tick``, ``full_resync``, ``continue``), or ``invalid`` if the function cannot read it."""
        try:
            return decode(self.data, self.message_id).type.value
        except MessageError:
            return INVALID

    def age(self, now: dt.datetime) -> dt.timedelta | None:
        """How long ago it was published, by the publish time the dead-letter subscription reports; None if none."""
        try:
            published = dt.datetime.fromisoformat(self.published)
        except ValueError:
            return None
        return now - (published if published.tzinfo else published.replace(tzinfo=dt.UTC))

    @property
    def own_attributes(self) -> dict[str, str]:
        return {k: v for k, v in self.attributes.items() if not k.startswith(_DEAD_LETTER_ATTRIBUTE_PREFIX)}

    @property
    def requested_at(self) -> str | None:
        """When the request was first published (UTC, ISO 8601): kept from an earlier replay, else the
        publish time on the source topic that Pub/Sub records, else this letter's own; None if unreadable."""
        for raw in (self.attributes.get(REQUESTED_AT_ATTRIBUTE), self.attributes.get(_SOURCE_PUBLISH_TIME), self.published):
            try:
                moment = dt.datetime.fromisoformat(raw or "")
            except ValueError:
                continue
            return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).astimezone(dt.UTC).isoformat()
        return None

    def replay_attributes(self) -> dict[str, str]:
        """Its own attributes, the first dead letter's id, and when the request was first published."""
        attributes = {**self.own_attributes, _REPLAYED_FROM: self.own_attributes.get(_REPLAYED_FROM, self.message_id)}
        requested = self.requested_at
        return {**attributes, REQUESTED_AT_ATTRIBUTE: requested} if requested else attributes

    def as_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "type": self.type,
            "published": self.published,
            "delivery_attempts": self.delivery_attempts,
            "source_subscription": self.attributes.get("CloudPubSubDeadLetterSourceSubscription"),
            "body": self.data.decode("utf-8", errors="replace"),
            "attributes": self.own_attributes,
        }


class Subscriber(Protocol):
    """The slice of ``pubsub_v1.SubscriberClient`` used here."""

    def pull(self, *, request: Mapping[str, Any], timeout: float) -> Any: ...

    def acknowledge(self, *, request: Mapping[str, Any]) -> Any: ...

    def modify_ack_deadline(self, *, request: Mapping[str, Any]) -> Any: ...


def pull_all(
    subscriber: Subscriber, subscription: str, limit: int, pulled: Callable[[int], None] | None = None
) -> list[DeadLetter]:
    """Pull up to ``limit`` messages, holding each until the caller acks or releases it.

    ``pulled`` is told the running count after each batch (the CLI shows it as progress).
    """
    from google.api_core import exceptions as gexc

    found: dict[str, DeadLetter] = {}
    while len(found) < limit:
        try:
            response = subscriber.pull(
                request={"subscription": subscription, "max_messages": min(limit - len(found), 100)},
                timeout=NEXT_PULL_TIMEOUT_SECONDS if found else FIRST_PULL_TIMEOUT_SECONDS,
            )
        except (gexc.DeadlineExceeded, gexc.RetryError):
            break  # nothing (more) to pull
        if not response.received_messages:
            break
        for received in response.received_messages:
            message = received.message
            found.setdefault(
                message.message_id,
                DeadLetter(
                    message_id=message.message_id,
                    ack_id=received.ack_id,
                    data=bytes(message.data),
                    attributes=dict(message.attributes),
                    published=message.publish_time.isoformat() if message.publish_time else "",
                ),
            )
        if pulled is not None:
            pulled(len(found))
    return list(found.values())


def release(subscriber: Subscriber, subscription: str, letters: Sequence[DeadLetter]) -> None:
    """Hand pulled messages back at once (ack deadline 0), so listing leaves them in place."""
    if letters:
        subscriber.modify_ack_deadline(
            request={"subscription": subscription, "ack_ids": [d.ack_id for d in letters], "ack_deadline_seconds": 0}
        )


def replay(
    subscriber: Subscriber,
    publish: Callable[[bytes, dict[str, str]], None],
    subscription: str,
    letters: Sequence[DeadLetter],
    replayed: Callable[[DeadLetter], None] | None = None,
) -> int:
    """Republish each letter, then acknowledge it; returns how many were replayed.

    ``replayed`` is called after each one is acknowledged (the CLI shows it as progress).
    """
    for letter in letters:
        publish(letter.data, letter.replay_attributes())
        subscriber.acknowledge(request={"subscription": subscription, "ack_ids": [letter.ack_id]})
        if replayed is not None:
            replayed(letter)
    return len(letters)


@dataclass(frozen=True)
class Selection:
    """Which pulled messages a command acts on; every criterion given must hold (none given: all)."""

    message_ids: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()
    older_than: dt.timedelta | None = None
    newer_than: dt.timedelta | None = None

    def __call__(self, letter: DeadLetter, now: dt.datetime) -> bool:
        if self.message_ids and letter.message_id not in self.message_ids:
            return False
        if self.types and letter.type not in self.types:
            return False
        age = letter.age(now)
        if self.older_than is not None and (age is None or age < self.older_than):
            return False
        return not (self.newer_than is not None and (age is None or age > self.newer_than))


def select(letters: Sequence[DeadLetter], selection: Selection, now: dt.datetime) -> tuple[list[DeadLetter], list[DeadLetter]]:
    """The letters ``selection`` picks, and the others (to release)."""
    picked = [d for d in letters if selection(d, now)]
    chosen = {d.ack_id for d in picked}
    return picked, [d for d in letters if d.ack_id not in chosen]


_AGE_RE = re.compile(r"^([0-9]+)([smhd])$")  # [0-9], not \d: \d also matches other scripts' digits
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_age(text: str) -> dt.timedelta:
    """``90s``, ``30m``, ``2h``, ``7d``: an age for ``--older-than`` and ``--newer-than``."""
    match = _AGE_RE.match(text.strip())
    if match is None:
        msg = f"an age is a whole number with s, m, h or d (30m, 2h, 7d), got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return dt.timedelta(**{_AGE_UNITS[match.group(2)]: int(match.group(1))})


# --- command line -----------------------------------------------------------------


def add_parser(sub: Any) -> None:
    """Register ``dead-letters`` on the CLI's subparsers."""
    parser = sub.add_parser(
        "dead-letters",
        help="list (or --replay) messages in the dead-letter subscription",
        description=(
            f"List the messages in {SUBSCRIPTION_ENV}; --replay republishes them to {TOPIC_ENV} and acks them."
            " --id, --type, --older-than and --newer-than pick which; the others are left in place."
        ),
    )
    parser.add_argument("--replay", action="store_true", help=f"republish every selected message to {TOPIC_ENV}, then ack it")
    parser.add_argument("--dry-run", action="store_true", help="with --replay: show what would be replayed, change nothing")
    parser.add_argument("--id", action="append", default=[], metavar="MESSAGE_ID", help="only this message (repeatable)")
    parser.add_argument(
        "--type",
        action="append",
        default=[],
        choices=[*(t.value for t in MessageType), INVALID],
        help="only messages of this type (repeatable)",
    )
    parser.add_argument(
        "--older-than", type=parse_age, metavar="AGE", help="only messages published at least AGE ago (30m, 2h, 7d)"
    )
    parser.add_argument("--newer-than", type=parse_age, metavar="AGE", help="only messages published at most AGE ago")
    parser.add_argument(
        "--limit", type=arguments.count, default=100, help="pull at most this many messages to choose from (default 100)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def main(args: argparse.Namespace, env: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    """Run the command; exit codes as the rest of the CLI (0 ok, 1 failure, 2 configuration)."""
    if args.dry_run and not args.replay:
        print("error: --dry-run goes with --replay (listing never changes anything)", file=err)
        return 2
    try:
        subscription, topic = _config(env, need_topic=args.replay)
    except ConfigurationError as error:
        print(f"error: {error}", file=err)
        return 2
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    from sync.ops.progress import tracking

    # PUBSUB_EMULATOR_HOST, when set, is honoured by both clients.
    subscriber = pubsub_v1.SubscriberClient()
    with tracking(f"pulling from {subscription}") as progress:
        pulled = pull_all(subscriber, subscription, args.limit, lambda n: progress.update(f"pulled {n} message(s)"))
    selection = Selection(frozenset(args.id), frozenset(args.type), args.older_than, args.newer_than)
    letters, others = select(pulled, selection, dt.datetime.now(dt.UTC))
    release(subscriber, subscription, others)
    missing = sorted(set(args.id) - {d.message_id for d in letters})
    if missing:
        print(f"note: not among the {len(pulled)} message(s) pulled: {', '.join(missing)}", file=err)
    if not args.replay or args.dry_run:
        release(subscriber, subscription, letters)
        _print(letters, out, as_json=args.json, replay_to=topic if args.dry_run else None)
        return 0
    publisher = pubsub_v1.PublisherClient()

    def publish(data: bytes, attributes: dict[str, str]) -> None:
        publisher.publish(topic, data, **attributes).result(timeout=PUBLISH_TIMEOUT_SECONDS)

    with tracking(f"replaying to {topic}", total=len(letters)) as progress:
        count = replay(subscriber, publish, subscription, letters, lambda _letter: progress.advance())
    if args.json:
        json.dump({"replayed": [d.as_dict() for d in letters], "topic": topic}, out, indent=2)
        out.write("\n")
    else:
        print(f"replayed {count} message(s) to {topic}", file=out)
    return 0


def _config(env: Mapping[str, str], *, need_topic: bool) -> tuple[str, str]:
    problems = []
    subscription = (env.get(SUBSCRIPTION_ENV) or "").strip()
    topic = (env.get(TOPIC_ENV) or "").strip()
    if not subscription:
        hint = "projects/PROJECT/subscriptions/NAME; terraform output dead_letter_subscription"
        problems.append(f"{SUBSCRIPTION_ENV} is required ({hint})")
    elif not _SUBSCRIPTION_RE.match(subscription):
        problems.append(f"{SUBSCRIPTION_ENV} must be projects/PROJECT/subscriptions/NAME, got {subscription!r}")
    if need_topic and not topic:
        problems.append(f"{TOPIC_ENV} is required for --replay (projects/PROJECT/topics/NAME)")
    elif topic and not _TOPIC_RE.match(topic):
        problems.append(f"{TOPIC_ENV} must be projects/PROJECT/topics/NAME, got {topic!r}")
    if problems:
        raise ConfigurationError(problems)
    return subscription, topic


def _print(letters: Sequence[DeadLetter], out: TextIO, *, as_json: bool, replay_to: str | None = None) -> None:
    """The selected letters; ``replay_to`` set: a dry run, worded as what a replay would do."""
    rows = [d.as_dict() for d in letters]
    if as_json:
        json.dump({"would_replay": rows, "topic": replay_to} if replay_to else rows, out, indent=2)
        out.write("\n")
        return
    if not rows:
        print("no dead letters" + (" selected" if replay_to else ""), file=out)
        return
    tables.render(rows, _COLUMNS, out, width=tables.width_for(out))
    if replay_to:
        print(f"dry run: would replay {len(rows)} message(s) to {replay_to}; nothing was published or acknowledged", file=out)
    else:
        print(f"{len(rows)} message(s); replay with --replay (--dry-run to see first)", file=out)


def _published(value: str) -> str:
    try:
        return dt.datetime.fromisoformat(value).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return value


_COLUMNS = (
    tables.Column("message_id", "message id"),
    tables.Column("published", "published (UTC)", show=_published),
    tables.Column("type", "type"),
    tables.Column("delivery_attempts", "attempts", "right"),
    # json.dumps escapes control characters, so a hostile body cannot drive the terminal.
    tables.Column("body", "body", flex=True, min_width=20, show=json.dumps),
)
