"""The event contract as an AsyncAPI 3.0 document, generated from the code.

    python -m shared.asyncapi                     # writes docs/asyncapi.yaml
    python -m shared.asyncapi --check             # exit 1 when docs/asyncapi.yaml is stale
    python -m shared.asyncapi --update-snapshots  # and the schema snapshots, if additive
    python -m shared.asyncapi --update-snapshots --allow-breaking

Sources: the topics and which messages each carries (shared/topics.py), the pydantic
models (shared/events.py: their JSON schemas, docstrings and field descriptions),
the headers every publish writes (shared/kafka.py `message_headers`, per message: a
`Message` names its order, the carrier's `UsageReported` does not), the subscribers of
each service's router (topic, consumer group, ack policy), and the operator's audit
topic and record (services/operator/audit.py).

Why not FastStream's own generator: it documents the subscribers only. Our services
publish through the outbox relay, not through declared publishers, so it misses every
send, the topics nobody in this repository consumes (orders.events.v1 and the
dead-letter topics), the Kafka key and the headers.

How the contract evolves, and what counts as additive: docs/contract.md.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import importlib
import inspect
import json
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from shared import events, topics
from shared.kafka import message_headers
from shared.schema_compatibility import Change, breaking, compare_snapshots
from shared.settings import REPO_ROOT, ServiceSettings
from shared.topic_layout import DEFAULT_PARTITIONS

DOCUMENT: Final = REPO_ROOT / "docs" / "asyncapi.yaml"
SNAPSHOTS: Final = REPO_ROOT / "tests" / "contract" / "snapshots"
SERVICES: Final = ("orders", "payments", "provisioning")  # each has handlers.router
INTERNAL_SYSTEMS: Final = "internal-systems"  # storefront, app, customer care, `topup order`
OPERATOR: Final = "operator"  # the operator service: its dashboard, `topup dlq`, replays
CARRIER: Final = "carrier"  # the mobile network; locally services/carrier_simulator
BINDING_VERSION: Final = "0.5.0"

# Who sends the topics that are not events; events (`events`, `line-events`) are sent by
# the owner their name starts with. Each sender with what its send operation says.
SENDERS: Final[dict[str, dict[str, str]]] = {
    topics.ORDERS_COMMANDS: {
        INTERNAL_SYSTEMS: "Published keyed by ICCID; the same request_id twice is one order.",
        "provisioning": "Auto-renewal orders, through the transactional outbox, keyed by "
        "ICCID: request_id `autorenew:<iccid>:<cycle_order_id>:<alert>:<attempt>`, so a "
        "threshold crossed once places one order per attempt, however often it is seen.",
    },
    topics.PAYMENTS_COMMANDS: {"orders": ""},  # the saga's orchestrator
    topics.PROVISIONING_COMMANDS: {"orders": ""},
    topics.CARRIER_USAGE: {
        CARRIER: "The carrier's usage reports, keyed by ICCID; `event_id` is the carrier's "
        "report id, so a report delivered twice is counted once. Locally the carrier "
        "simulator publishes them (CARRIER_USAGE_INTERVAL_S > 0).",
    },
}
OUTBOX_SEND: Final = "Published through the transactional outbox, keyed by ICCID."
# Readers outside this repository, by topic, with what they do with it.
EXTERNAL_RECEIVERS: Final[dict[str, dict[str, str]]] = {
    topics.ORDERS_EVENTS: {INTERNAL_SYSTEMS: "Read by the systems that publish the requests."},
    topics.PROVISIONING_LINE_EVENTS: {
        INTERNAL_SYSTEMS: "Read by the internal systems, to tell the customer: data running "
        "low or out, validity ending, data forfeited, auto-renewal paused.",
    },
}
# What a channel is about, beyond its owner and kind.
CHANNEL_NOTES: Final = {
    topics.ORDERS_COMMANDS: "Internal systems place orders here; so does provisioning, "
    "for the lines that opted in to auto-renewal.",
    topics.PROVISIONING_LINE_EVENTS: "Facts about lines rather than about a saga step: "
    "alerts (once per threshold per package cycle), forfeited data, a paused "
    "auto-renewal. `order_id` is the order whose top-up started the line's current "
    "package cycle (for AutoRenewalPaused: the last renewal order).",
    topics.CARRIER_USAGE: "Data used by each line, as the carrier measured it; "
    "provisioning keeps the lines' balances from it. Not about an order: no `order_id`, "
    "in the payload or the headers.",
}

ICCID_KEY: Final = {
    "type": "string",
    "description": "The line's ICCID (ITU-T E.118, 19-20 digits starting 89), as UTF-8: every "
    "message about one line is in one partition, in order.",
}
# Every header `message_headers` writes must be described here (the generator refuses
# to run otherwise); the optional ones come from the libraries.
HEADERS: Final = {
    "type": {"type": "string", "description": "The message's name, as in the payload's `type`."},
    "event_id": {
        "type": "string",
        "format": "uuid",
        "description": "The payload's `event_id`: consumers drop a message whose id they have "
        "acted on already (shared/inbox.py).",
    },
    "order_id": {
        "type": "string",
        "format": "uuid",
        "description": "The saga's id, the payload's `order_id`.",
    },
}
OPTIONAL_HEADERS: Final = {
    "traceparent": {
        "type": "string",
        "description": "W3C trace context of the publishing span, when tracing is on.",
    },
    "tracestate": {"type": "string", "description": "W3C trace state, with `traceparent`."},
    "dlq.replayed_from": {
        "type": "string",
        "description": "On a message replayed from a dead-letter topic: the dead letter's "
        "`<topic>:<partition>:<offset>`.",
    },
    "content-type": {"type": "string", "description": "Set by FastStream: application/json."},
    "correlation_id": {"type": "string", "description": "Set by FastStream; not relied upon."},
}
DEAD_LETTER_HEADERS: Final = {
    "dlq.source.topic": {"type": "string", "description": "The topic the message came from."},
    "dlq.source.partition": {
        "type": "string",
        "pattern": "^[0-9]+$",
        "description": "Its partition there, in decimal.",
    },
    "dlq.source.offset": {
        "type": "string",
        "pattern": "^[0-9]+$",
        "description": "Its offset there, in decimal.",
    },
    "dlq.reason": {
        "type": "string",
        "description": "Why it was set aside: too_large (larger than the contract's "
        "limit, refused unread), undecodable, schema_invalid, unknown_schema_version, "
        "business_rule (dead-lettered at once) or retries_exhausted (a failure that "
        "persisted through the retries).",
    },
    "dlq.error": {
        "type": "string",
        "maxLength": 2000,
        "description": "The error, `ExceptionType: message`, at most 2,000 characters.",
    },
    "dlq.consumer": {"type": "string", "description": "The service that could not process it."},
    "dlq.failed_at": {
        "type": "string",
        "format": "date-time",
        "description": "When it was dead-lettered (ISO 8601, UTC).",
    },
}

_READS: Final = ", ".join(str(v) for v in sorted(events.SUPPORTED_SCHEMA_VERSIONS))
GUARANTEES: Final = f"""\
Data-SIM and eSIM top-ups: the orders, payments and provisioning services run a saga
over these topics. Every application of the system is in this one document; each
operation is tagged with the application that performs it.

- **Key = ICCID.** Every message is keyed by the line's ICCID, so everything about one
  line is in one partition, in order. Topics have {DEFAULT_PARTITIONS} partitions.
- **Envelope.** Every message carries `type` (its name), `event_id`, `occurred_at`,
  `schema_version` (this code reads {_READS}) and the line's `iccid`; the headers repeat
  `type` and `event_id`. Every message about an order (a *Message*: all but the carrier's
  `UsageReported`) also carries `order_id` (the saga's id), repeated in the headers
  (`MessageHeaders`); a usage report has neither (`EnvelopeHeaders`).
- **Idempotency.** `order_id = uuid5(ORDER_NAMESPACE, request_id)` with ORDER_NAMESPACE
  {events.ORDER_NAMESPACE}: the same request published twice is one order,
  and the duplicate gets the same answer.
  Consumers deduplicate by `event_id` in the transaction of their effect and commit
  their offset only afterwards: delivery is at least once, the effect exactly once.
- **Outbox.** Services publish what a transaction decided only after it committed
  (a transactional outbox, relayed in order by an idempotent producer, acks=all).
- **Dead letters.** What a consumer cannot process goes to `<topic>.dlt` with its
  original bytes, key and headers plus `dlq.*` headers saying why; it can be replayed.
- **Money** is integer minor units plus an ISO 4217 currency, never a float.
- **Lines.** Beside the saga, the carrier reports usage (`carrier.usage.v1`) and
  provisioning publishes what it makes of it (`provisioning.line-events.v1`: alerts,
  forfeited data, paused auto-renewals); an auto-renewal is a `PlaceOrder` provisioning
  sends on `orders.commands.v1`, through the same saga.
- **Operator.** The operator service reads every topic without a consumer group
  (timelines, rates, lag), replays dead letters to their source topic, and records each
  of its actions on the audit topic; provisioning records there who changed a line's
  auto-renewal over its API.
- **Evolution.** Changes are additive only (a new optional field, a new message type);
  a breaking change is a new `schema_version` or a new `.v2` topic (docs/contract.md).
  The version's build part fingerprints the message schemas.
"""


Snapshots = dict[str, dict[str, Any]]
"""JSON schemas by topic: {"topic", "key", "headers", "messages": {name: schema}}."""


class ContractError(Exception):
    """The code's contract cannot be documented as it stands."""


# --- what the code says ------------------------------------------------------------


def models_on(topic: str) -> list[type[events.Envelope]]:
    names = topics.MESSAGES_ON.get(topic)
    if not names:
        raise ContractError(f"{topic} is in ALL_TOPICS but MESSAGES_ON names no message for it")
    models = {name: getattr(events, name, None) for name in names}
    found = [m for m in models.values() if inspect.isclass(m) and issubclass(m, events.Envelope)]
    if len(found) < len(names):
        unknown = [name for name, model in models.items() if model not in found]
        raise ContractError(f"MESSAGES_ON[{topic!r}] names no model in shared/events.py: {unknown}")
    return found


def source_of(dead_letter_topic: str) -> str | None:
    source = dead_letter_topic.removesuffix(".dlt")
    return source if topics.dead_letter_topic(source) == dead_letter_topic else None


def subscriptions() -> dict[str, list[tuple[str, str, str]]]:
    """(service, consumer group, ack policy) of every subscriber, by topic."""
    found: dict[str, list[tuple[str, str, str]]] = {}
    for service in SERVICES:
        router = importlib.import_module(f"services.{service}.handlers").router
        for subscriber in router.subscribers:
            for topic in subscriber.topic_names:
                policy = getattr(subscriber.ack_policy, "name", str(subscriber.ack_policy))
                found.setdefault(topic, []).append((service, str(subscriber.group_id), policy))
    return {topic: sorted(subs) for topic, subs in found.items()}


def senders_of(topic: str) -> dict[str, str]:
    """Who sends `topic`, each with what its send operation says ("" for the default)."""
    owner, kind, _version = topic.split(".")
    if kind == "events" or kind.endswith("-events"):
        return {owner: ""}
    if topic in SENDERS:
        return SENDERS[topic]
    raise ContractError(f"who sends {topic}? add it to SENDERS in shared/asyncapi.py")


def header_names(model: type[events.Envelope]) -> list[str]:
    """The headers every publish of `model` writes, read off `message_headers` itself."""
    sample = model.model_construct(
        type=model.__name__,
        event_id=events.ORDER_NAMESPACE,
        order_id=events.ORDER_NAMESPACE,
        iccid="89",
    )
    names = [name for name in message_headers(sample) if name not in OPTIONAL_HEADERS]
    undocumented = [name for name in names if name not in HEADERS]
    if undocumented:
        raise ContractError(f"describe the headers {undocumented} in shared/asyncapi.py HEADERS")
    return names


# What the internal systems write: they need send no header at all (orders reads the
# body), so its headers are described, none required.
FROM_OUTSIDE: Final = (events.PlaceOrder,)


def headers_schema_name(model: type[events.Envelope]) -> str:
    """`MessageHeaders` for a message about an order, `EnvelopeHeaders` for the others,
    `RequestHeaders` for what the internal systems write (FROM_OUTSIDE)."""
    if model in FROM_OUTSIDE:
        return "RequestHeaders"
    base = events.Message if issubclass(model, events.Message) else events.Envelope
    return f"{base.__name__}Headers"


def headers_schema(models: Sequence[type[events.Envelope]]) -> dict[str, Any]:
    """The headers of a topic carrying `models`: what all of them write is required, what
    only some write is described but optional (none of our topics mixes the two yet);
    nothing is required of what outside systems write."""
    written = [header_names(model) for model in models]
    every = [name for name in written[0] if all(name in names for names in written)]
    some = [name for names in written for name in names]
    return {
        "type": "object",
        "properties": {**{n: HEADERS[n] for n in dict.fromkeys(some)}, **OPTIONAL_HEADERS},
        "required": [] if all(model in FROM_OUTSIDE for model in models) else every,
    }


# Written on every dead letter now; optional for readers: older dead letters lack them.
DEAD_LETTER_OPTIONAL_HEADERS: Final = {
    "dlq.source.size": {
        "type": "string",
        "pattern": "^[0-9]+$",
        "description": "The original value's size in bytes, in decimal (on every dead letter "
        "written since they were bounded; older ones lack it).",
    },
    "dlq.source.sha256": {
        "type": "string",
        "pattern": "^[0-9a-f]{64}$",
        "description": "The original value's SHA-256, in hex, to find or check the original "
        "(as `dlq.source.size`).",
    },
    "dlq.redacted": {
        "type": "string",
        "enum": ["card_number"],
        "description": "On a dead letter whose original held a card number: every card number "
        "in the payload and the error is masked to its last four digits (the original is "
        "on its source topic; such a dead letter replays masked).",
    },
    "dlq.truncated": {
        "type": "string",
        "enum": ["value", "headers", "value,headers"],
        "description": "On a dead letter that could not hold everything: `value` when the "
        "payload is only the first 4,096 bytes of the original (a `too_large` one: the "
        "original stays on `dlq.source.topic` at `dlq.source.offset` while retained; such a "
        "dead letter is never replayed), `headers` when some original headers were cut short "
        "or left out (each value at most 1,024 bytes, 8,192 bytes in all).",
    },
}


def dead_letter_headers_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "The original message's headers, as they were, plus where it came "
        "from and why it could not be processed.",
        "properties": {
            **DEAD_LETTER_HEADERS,
            **DEAD_LETTER_OPTIONAL_HEADERS,
            **HEADERS,
            **OPTIONAL_HEADERS,
        },
        "required": list(DEAD_LETTER_HEADERS),
    }


DEAD_LETTER_PAYLOAD: Final = {
    "description": "The original bytes, unchanged: maybe not JSON, maybe not any schema; "
    "only their first 4,096 bytes when the original was larger than 65,536 bytes "
    "(`dlq.truncated`).",
}
AUDIT_KEY: Final = {
    "type": "string",
    "description": "Who acted: an operator, or an internal system calling a service's API.",
}


def audit_log() -> tuple[str, type[Any], str]:
    """The operator's audit topic, its record and what the module says of it."""
    audit = importlib.import_module("services.operator.audit")
    return audit.AUDIT_TOPIC, audit.AuditEntry, inspect.cleandoc(audit.__doc__ or "")


def audit_schema() -> dict[str, Any]:
    _topic, entry, _about = audit_log()
    return TypeAdapter(entry).json_schema()


# --- snapshots: the schemas the compatibility check compares -------------------------


def snapshots() -> Snapshots:
    """Per topic: the schemas of its key, headers and messages (self-contained)."""
    taken: Snapshots = {}
    for topic in topics.ALL_TOPICS:
        if source_of(topic) is not None:
            headers, messages = dead_letter_headers_schema(), {"DeadLetter": DEAD_LETTER_PAYLOAD}
        else:
            headers = headers_schema(models_on(topic))
            messages = {m.__name__: m.model_json_schema() for m in models_on(topic)}
        taken[topic] = {"topic": topic, "key": ICCID_KEY, "headers": headers, "messages": messages}
    audit_topic, entry, _about = audit_log()
    taken[audit_topic] = {
        "topic": audit_topic,
        "key": AUDIT_KEY,
        "messages": {entry.__name__: audit_schema()},
    }
    return taken


def read_snapshots(directory: Path | None = None) -> Snapshots:
    return {
        path.name.removesuffix(".json"): json.loads(path.read_text())
        for path in sorted((directory or SNAPSHOTS).glob("*.json"))
    }


def snapshot_text(snapshot: dict[str, Any]) -> str:
    return json.dumps(snapshot, indent=2, sort_keys=True) + "\n"


def changes_since(stored: Snapshots, current: Snapshots) -> list[Change]:
    """Every change from the stored snapshots to the code's, topics included."""
    changes: list[Change] = []
    for topic in sorted(stored.keys() - current.keys()):
        changes.append(Change(topic, "removed topic", breaking=True))
    for topic in sorted(current.keys() - stored.keys()):
        changes.append(Change(topic, "new topic", breaking=False))
    for topic in sorted(stored.keys() & current.keys()):
        changes += compare_snapshots(stored[topic], current[topic])
    return changes


def fingerprint(taken: Snapshots) -> str:
    text = json.dumps(taken, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# --- the document ----------------------------------------------------------------------


def channel_id(topic: str) -> str:
    return topic.replace(".", "-")


def build_document() -> dict[str, Any]:
    subscribed = subscriptions()
    models = sorted(
        {m for t in topics.ALL_TOPICS if source_of(t) is None for m in models_on(t)},
        key=lambda m: m.__name__,
    )
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in sorted(topics.ALL_TOPICS):
        names = ["DeadLetter"] if source_of(topic) else [m.__name__ for m in models_on(topic)]
        about = _channel_description(topic)
        channels[channel_id(topic)] = _channel(topic, names, about, DEFAULT_PARTITIONS)
        operations.update(_operations(topic, names, subscribed))
    audit_topic, entry, about = audit_log()
    channels[channel_id(audit_topic)] = _channel(audit_topic, [entry.__name__], about, None)
    operations.update(_audit_operations(audit_topic, entry.__name__))
    version = max(events.SUPPORTED_SCHEMA_VERSIONS)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Top-up billing: the event contract",
            "version": f"{version}.0.0+{fingerprint(snapshots())}",
            "description": GUARANTEES,
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": ServiceSettings.model_fields["kafka_bootstrap_servers"].default,
                "protocol": "kafka",
                "description": "The broker of `make run` (KAFKA_BOOTSTRAP_SERVERS elsewhere).",
                "security": [{"$ref": "#/components/securitySchemes/principal"}],
            }
        },
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {
            "messages": {
                **{m.__name__: _message(m) for m in models},
                "DeadLetter": _dead_letter_message(),
                entry.__name__: _audit_message(entry),
            },
            "schemas": {
                **_schemas(models),
                **_header_schemas(models),
                "DeadLetterHeaders": dead_letter_headers_schema(),
                "DeadLetterPayload": DEAD_LETTER_PAYLOAD,
                entry.__name__: audit_schema(),
            },
            "securitySchemes": {
                "principal": {
                    "type": "scramSha512",
                    "description": "Every client signs in as a principal of its own and may "
                    "write and read only the topics its ACLs name (shared/kafka_access.py; "
                    "docs/contract.md, who may write and read each topic).",
                }
            },
            "correlationIds": {
                "orderId": {
                    "description": "The saga's id, uuid5 of the publisher's request_id.",
                    "location": "$message.header#/order_id",
                }
            },
        },
    }


def _header_schemas(models: list[type[events.Envelope]]) -> dict[str, Any]:
    """One headers schema per kind of message (`headers_schema_name`)."""
    kinds: dict[str, list[type[events.Envelope]]] = {}
    for model in models:
        kinds.setdefault(headers_schema_name(model), []).append(model)
    return {name: headers_schema(kind) for name, kind in sorted(kinds.items())}


def _channel_description(topic: str) -> str:
    source = source_of(topic)
    if source is not None:
        return (
            f"Dead letters of `{source}`: what a consumer of it could not process, with "
            f"its original bytes, key and headers plus `dlq.*` headers saying why. "
            f"The operator replays one to `{source}` once its cause is fixed."
        )
    owner, kind, _version = topic.split(".")
    if kind == "commands":
        about = f"Commands addressed to {owner}."
    elif kind.endswith("events"):
        about = f"Events of {owner}."
    else:
        about = f"Reports of the {owner}."
    note = f" {CHANNEL_NOTES[topic]}" if topic in CHANNEL_NOTES else ""
    return f"{about}{note} Keyed by the line's ICCID."


def _channel(
    topic: str, message_names: list[str], description: str, partitions: int | None
) -> dict[str, Any]:
    kafka: dict[str, Any] = {"topic": topic}
    if partitions is not None:  # None: the topic's creator says (its description)
        kafka["partitions"] = partitions
    return {
        "address": topic,
        "description": description,
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in message_names},
        "bindings": {"kafka": {**kafka, "bindingVersion": BINDING_VERSION}},
    }


Operation = tuple[str, dict[str, Any]]


def _operation(
    topic: str, message_names: list[str], app: str, action: str, summary: str, **extra: Any
) -> Operation:
    channel = channel_id(topic)
    body = {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "title": f"{app}: {action} {topic}",
        "summary": summary,
        **extra,
        "tags": [{"name": app}],
        "messages": [{"$ref": f"#/channels/{channel}/messages/{n}"} for n in message_names],
    }
    return f"{app}-{action}-{channel}", body


def _operations(
    topic: str, names: list[str], subscribed: dict[str, list[tuple[str, str, str]]]
) -> Iterable[Operation]:
    source = source_of(topic)
    if source is not None:
        for service in sorted({s for s, _group, _policy in subscribed.get(source, [])}):
            summary = f"{service} sets aside what it cannot process from {source}."
            yield _operation(topic, names, service, "send", summary)
        summary = "Listed, inspected and replayed by the operator."
        yield _operation(topic, names, OPERATOR, "receive", summary)
        return
    for sender, summary in senders_of(topic).items():
        yield _operation(topic, names, sender, "send", summary or OUTBOX_SEND)
    summary = (
        "Replays a dead letter of this topic: its original bytes, key and headers, plus "
        "`dlq.replayed_from`; audited. Consumers drop it if they acted on its event_id."
    )
    yield _operation(topic, names, OPERATOR, "send", summary)
    for service, group, policy in subscribed.get(topic, []):
        summary = (
            f"Consumer group `{group}`, ack policy {policy}: the offset is committed "
            f"only after the handler's transaction."
        )
        kafka = {
            "groupId": {"type": "string", "enum": [group]},
            "clientId": {"type": "string", "enum": [service]},
            "bindingVersion": BINDING_VERSION,
        }
        yield _operation(topic, names, service, "receive", summary, bindings={"kafka": kafka})
    for receiver, summary in EXTERNAL_RECEIVERS.get(topic, {}).items():
        yield _operation(topic, names, receiver, "receive", summary)


def _audit_operations(topic: str, entry: str) -> Iterable[Operation]:
    summary = "Every state-changing action, durable before the action is reported done."
    yield _operation(topic, [entry], OPERATOR, "send", summary)
    summary = (
        "A line's auto-renewal set or stopped over its API, with the caller who did it: "
        "staged in the outbox with the change."
    )
    yield _operation(topic, [entry], "provisioning", "send", summary)
    summary = "Read back for the audit view and to mark replayed dead letters."
    yield _operation(topic, [entry], OPERATOR, "receive", summary)


def _message(model: type[events.Envelope]) -> dict[str, Any]:
    name = model.__name__
    title = _words(name)
    first, _, rest = inspect.cleandoc(model.__doc__ or "").partition("\n\n")
    message: dict[str, Any] = {
        "name": name,
        "title": title,
        "summary": first.replace("\n", " ") or f"{title}.",
    }
    if rest:
        message["description"] = rest
    message["contentType"] = "application/json"
    if "order_id" in header_names(model):  # a usage report is about no order
        message["correlationId"] = {"$ref": "#/components/correlationIds/orderId"}
    return {
        **message,
        "headers": {"$ref": f"#/components/schemas/{headers_schema_name(model)}"},
        "payload": {"$ref": f"#/components/schemas/{name}"},
        "bindings": {"kafka": {"key": ICCID_KEY, "bindingVersion": BINDING_VERSION}},
    }


def _audit_message(entry: type[Any]) -> dict[str, Any]:
    return {
        "name": entry.__name__,
        "title": _words(entry.__name__),
        "summary": "One action of an operator or a caller: when, who, what, on what, how it went.",
        "payload": {"$ref": f"#/components/schemas/{entry.__name__}"},
        "bindings": {"kafka": {"key": AUDIT_KEY, "bindingVersion": BINDING_VERSION}},
    }


def _dead_letter_message() -> dict[str, Any]:
    return {
        "name": "DeadLetter",
        "title": "Dead letter",
        "summary": "A message a consumer could not process, set aside with the reason.",
        "headers": {"$ref": "#/components/schemas/DeadLetterHeaders"},
        "payload": {"$ref": "#/components/schemas/DeadLetterPayload"},
        "bindings": {"kafka": {"key": ICCID_KEY, "bindingVersion": BINDING_VERSION}},
    }


def _schemas(models: Sequence[type[BaseModel]]) -> dict[str, Any]:
    _refs, schema = models_json_schema(
        [(model, "validation") for model in models], ref_template="#/components/schemas/{model}"
    )
    return dict(sorted(schema.get("$defs", {}).items()))


def _words(name: str) -> str:
    """`OrderPaymentFailed` -> `Order payment failed`."""
    return re.sub(r"(?<!^)([A-Z])", r" \1", name).capitalize()


# --- rendering and the command line ----------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line text, so descriptions read as they were written; no
    anchors and aliases for repeated parts, so every part reads on its own."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def render(document: dict[str, Any]) -> str:
    header = "# Generated by `python -m shared.asyncapi` (make contract): do not edit.\n"
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return header + body


def stale_summary(written: str, generated: str, limit: int = 60) -> str:
    """What differs between the file and the code, briefly, or "" when nothing does."""
    if written == generated:
        return ""
    diff = list(
        difflib.unified_diff(
            written.splitlines(),
            generated.splitlines(),
            "docs/asyncapi.yaml",
            "the code",
            n=1,
            lineterm="",
        )
    )
    changed = sum(1 for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---"))
    more = [f"... {len(diff) - limit} more diff lines"] if len(diff) > limit else []
    return "\n".join(
        [
            f"docs/asyncapi.yaml is stale: {changed} lines differ from the code.",
            *diff[:limit],
            *more,
            "Run `make contract` (python -m shared.asyncapi --update-snapshots) and commit.",
        ]
    )


def update_snapshots(allow_breaking: bool) -> list[Change]:
    """Write the code's snapshots unless that is breaking (and not allowed); the changes."""
    current = snapshots()
    changes = changes_since(read_snapshots(), current)
    if breaking(changes) and not allow_breaking:
        return changes
    SNAPSHOTS.mkdir(parents=True, exist_ok=True)
    for stale in SNAPSHOTS.glob("*.json"):
        if stale.name.removesuffix(".json") not in current:
            stale.unlink()
    for topic, snapshot in current.items():
        (SNAPSHOTS / f"{topic}.json").write_text(snapshot_text(snapshot))
    return changes


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.asyncapi",
        description="Write docs/asyncapi.yaml from the code (docs/contract.md).",
    )
    parser.add_argument("--check", action="store_true", help="only say whether it is stale")
    parser.add_argument(
        "--update-snapshots",
        action="store_true",
        help="also record the message schemas, refusing a breaking change",
    )
    parser.add_argument(
        "--allow-breaking", action="store_true", help="record a breaking change all the same"
    )
    args = parser.parse_args(argv)
    try:
        generated = render(build_document())
    except ContractError as error:
        print(f"cannot document the contract: {error}", file=sys.stderr)
        return 2
    if args.check:
        written = DOCUMENT.read_text() if DOCUMENT.exists() else ""
        summary = stale_summary(written, generated)
        print(summary or f"{_shown(DOCUMENT)} is up to date.")
        return 1 if summary else 0
    if args.update_snapshots:
        changes = update_snapshots(args.allow_breaking)
        for change in changes:
            print(change)
        if breaking(changes) and not args.allow_breaking:
            print(
                "Refused: these changes break readers of the contract (docs/contract.md: "
                "a new schema_version or a new .v2 topic instead). Nothing was written; "
                "--allow-breaking records them all the same.",
                file=sys.stderr,
            )
            return 1
    DOCUMENT.parent.mkdir(parents=True, exist_ok=True)
    DOCUMENT.write_text(generated)
    print(f"wrote {_shown(DOCUMENT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
