"""``python -m sync dead-letters``: list what the push subscription gave up on, and replay it.

The push subscription moves a message to the dead-letter topic after ``max_delivery_attempts``
failed deliveries; the pull subscription ``SYNC_DEAD_LETTER_SUBSCRIPTION`` keeps it there.
Listing pulls without acknowledging and then releases the messages, so it changes nothing.
``--replay`` publishes each message's body (and its own attributes, not the ones Pub/Sub
added when dead-lettering) to ``SYNC_TOPIC`` and acknowledges it only after the publish is
confirmed: a crash in between replays it twice, which the function tolerates (a stale
continuation is ignored, a second tick finds nothing new).

Only Pub/Sub is needed, so this command reads its two variables itself instead of the full
:class:`sync.config.Settings`, which would also demand BigQuery and database settings.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from sync.errors import ConfigurationError

SUBSCRIPTION_ENV = "SYNC_DEAD_LETTER_SUBSCRIPTION"
TOPIC_ENV = "SYNC_TOPIC"
_SUBSCRIPTION_RE = re.compile(r"^projects/[^/]+/subscriptions/[A-Za-z][A-Za-z0-9._~%+-]{2,254}$")
_TOPIC_RE = re.compile(r"^projects/[^/]+/topics/[A-Za-z][A-Za-z0-9._~%+-]{2,254}$")
# Pub/Sub adds these when it dead-letters a message; a replay must not carry them back.
_DEAD_LETTER_ATTRIBUTE_PREFIX = "CloudPubSubDeadLetter"
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
    def own_attributes(self) -> dict[str, str]:
        return {k: v for k, v in self.attributes.items() if not k.startswith(_DEAD_LETTER_ATTRIBUTE_PREFIX)}

    def as_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
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


def pull_all(subscriber: Subscriber, subscription: str, limit: int) -> list[DeadLetter]:
    """Pull up to ``limit`` messages, holding each until the caller acks or releases it."""
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
) -> int:
    """Republish each letter, then acknowledge it; returns how many were replayed."""
    for letter in letters:
        publish(letter.data, {**letter.own_attributes, "replayed_from_dead_letter": letter.message_id})
        subscriber.acknowledge(request={"subscription": subscription, "ack_ids": [letter.ack_id]})
    return len(letters)


# --- command line -----------------------------------------------------------------


def add_parser(sub: Any) -> None:
    """Register ``dead-letters`` on the CLI's subparsers."""
    parser = sub.add_parser(
        "dead-letters",
        help="list (or --replay) messages in the dead-letter subscription",
        description=f"List the messages in {SUBSCRIPTION_ENV}; --replay republishes them to {TOPIC_ENV} and acks them.",
    )
    parser.add_argument("--replay", action="store_true", help=f"republish every listed message to {TOPIC_ENV}, then ack it")
    parser.add_argument("--limit", type=int, default=100, help="at most this many messages (default 100)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def main(args: argparse.Namespace, env: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    """Run the command; exit codes as the rest of the CLI (0 ok, 1 failure, 2 configuration)."""
    try:
        subscription, topic = _config(env, need_topic=args.replay)
    except ConfigurationError as error:
        print(f"error: {error}", file=err)
        return 2
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    # PUBSUB_EMULATOR_HOST, when set, is honoured by both clients.
    subscriber = pubsub_v1.SubscriberClient()
    letters = pull_all(subscriber, subscription, max(args.limit, 1))
    if not args.replay:
        release(subscriber, subscription, letters)
        _print(letters, out, as_json=args.json)
        return 0
    publisher = pubsub_v1.PublisherClient()

    def publish(data: bytes, attributes: dict[str, str]) -> None:
        publisher.publish(topic, data, **attributes).result(timeout=PUBLISH_TIMEOUT_SECONDS)

    count = replay(subscriber, publish, subscription, letters)
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


def _print(letters: Sequence[DeadLetter], out: TextIO, *, as_json: bool) -> None:
    rows = [d.as_dict() for d in letters]
    if as_json:
        json.dump(rows, out, indent=2)
        out.write("\n")
        return
    if not rows:
        print("no dead letters", file=out)
        return
    print(f"{'message_id':<20}  {'published':<32}  {'attempts':<8}  body", file=out)
    for row in rows:
        # json.dumps escapes control characters, so a hostile body cannot drive the terminal.
        body = json.dumps(row["body"])
        body = body if len(body) <= 80 else body[:77] + "..."
        print(f"{row['message_id']:<20}  {row['published']:<32}  {row['delivery_attempts'] or '-':<8}  {body}", file=out)
    print(f"{len(rows)} message(s); replay with --replay", file=out)
