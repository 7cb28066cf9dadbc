"""An order's timeline: every Kafka message about it, across the topics and their
dead-letter topics, in time order: the saga's messages, and the line events that name
the order (the alerts, forfeited data and paused auto-renewal of the package cycle its
top-up started; shared/events.py).

Messages are keyed by the line's ICCID, so on a topic everything about an order is on
the partition its ICCID hashes to (Kafka's murmur2, as aiokafka's default partitioner
does), from a little before the order was made. Dead-letter topics are read whole from
that time. The scan is bounded per partition (the newest records). The carrier's usage
reports name no order, so their topic is not read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2

from services.operator.dead_letter_store import read_range, reader
from services.operator.summaries import summary
from shared import events
from shared.kafka_access import KafkaClient
from shared.topics import DEAD_LETTER_TOPICS, MESSAGE_TOPICS, MESSAGES_ON

# The topics whose messages name an order (events.Message): all but the carrier's usage.
ORDER_TOPICS: Final = tuple(
    topic
    for topic in MESSAGE_TOPICS
    if any(issubclass(getattr(events, name), events.Message) for name in MESSAGES_ON[topic])
)


@dataclass(frozen=True)
class OrderRef:
    """What the timeline needs to know about an order (from the orders service)."""

    order_id: str
    request_id: str
    iccid: str
    created_at: datetime


def partition_for(key: str, partitions: int) -> int:
    """The partition a keyed message goes to: Kafka's default partitioner."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


async def timelines(
    kafka: KafkaClient, orders: Sequence[OrderRef], margin: timedelta, max_scan: int
) -> dict[str, list[dict[str, Any]]]:
    """Each order's messages, oldest first, read in one pass over the topics."""
    found: dict[str, list[dict[str, Any]]] = {ref.order_id: [] for ref in orders}
    if not orders:
        return found
    counts = await _partition_counts(kafka)
    wanted = {
        TopicPartition(topic, partition_for(ref.iccid, counts[topic]))
        for topic in ORDER_TOPICS
        if topic in counts
        for ref in orders
    } | {
        TopicPartition(topic, partition)
        for topic in DEAD_LETTER_TOPICS
        if topic in counts
        for partition in range(counts[topic])
    }
    since = min(ref.created_at for ref in orders) - margin
    by_request = {ref.request_id: ref.order_id for ref in orders}
    for record in await _records_since(kafka, sorted(wanted), since, max_scan):
        headers = {str(k): bytes(v or b"").decode(errors="replace") for k, v in record.headers}
        body = _json(record.value)
        order_id = _order_of(headers, body, by_request)
        if order_id in found:
            found[order_id].append(_entry(record, headers, body))
    for entries in found.values():
        entries.sort(key=lambda e: (e["timestamp"], e["topic"], e["offset"]))
    return found


async def _partition_counts(kafka: KafkaClient) -> dict[str, int]:
    admin = AIOKafkaAdminClient(**kafka.options())
    await admin.start()
    try:
        described = await admin.describe_topics([*ORDER_TOPICS, *DEAD_LETTER_TOPICS])
    finally:
        await admin.close()
    return {str(t["topic"]): len(t["partitions"]) for t in described if t["partitions"]}


async def _records_since(
    kafka: KafkaClient, partitions: list[TopicPartition], since: datetime, max_scan: int
) -> list[Any]:
    consumer = reader(kafka)
    await consumer.start()
    try:
        consumer.assign(partitions)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        at = await consumer.offsets_for_times(
            {tp: int(since.timestamp() * 1000) for tp in partitions}
        )
        starts = {
            tp: max(ends[tp] - max_scan, ends[tp] if at[tp] is None else at[tp].offset)
            for tp in partitions
        }
        return await read_range(consumer, starts, ends)
    finally:
        await consumer.stop()


def _json(value: bytes | None) -> Any:
    try:
        return json.loads(value or b"")
    except (ValueError, RecursionError):
        return None


def _order_of(headers: dict[str, str], body: Any, by_request: dict[str, str]) -> str | None:
    """The order a message is about: its header, its body, or (a PlaceOrder that left the
    order id out) the order its request id names."""
    if "order_id" in headers:
        return headers["order_id"]
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("order_id"), str):
        return str(body["order_id"])
    request_id = body.get("request_id")
    if isinstance(request_id, str):
        return by_request.get(request_id)
    return None


def _entry(record: Any, headers: dict[str, str], body: Any) -> dict[str, Any]:
    kind = headers.get("type") or (body.get("type") if isinstance(body, dict) else None) or "?"
    event_id = headers.get("event_id") or (body.get("event_id") if isinstance(body, dict) else None)
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(),
        "type": str(kind),
        "event_id": event_id,
        "summary": summary(str(kind), body, headers),
    }
