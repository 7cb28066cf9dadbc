"""Dead letters on the broker (shared/dead_letters.py writes them): reading `*.dlt`
topics and replaying what they hold.

A replay publishes the original bytes and key to the source topic, with the original
headers and `dlq.replayed_from=<dlt>:<partition>:<offset>`. Consumers deduplicate by
event_id, so replaying a message twice is harmless; one that still cannot be
processed is dead-lettered again (with `dlq.replayed_from`, so the trail is kept).

Reading never moves anybody's offsets: the consumers here have no group.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka_access import KafkaClient
from shared.topics import dead_letter_topic

DLT_SUFFIX: Final = dead_letter_topic("")
READ_TIMEOUT_S: Final = 60.0


class UnknownTopic(LookupError):
    """A dead-letter topic the broker does not have."""


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    raw_headers: tuple[tuple[str, bytes], ...]

    @classmethod
    def of(cls, record: Any) -> DeadLetter:
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=int(record.timestamp),
            key=record.key,
            value=record.value or b"",
            raw_headers=tuple((str(k), bytes(v or b"")) for k, v in record.headers or ()),
        )

    @property
    def headers(self) -> dict[str, str]:
        return {k: v.decode(errors="replace") for k, v in self.raw_headers}

    @property
    def where(self) -> str:
        """`<topic>:<partition>:<offset>`: how operators name one dead letter."""
        return f"{self.topic}:{self.partition}:{self.offset}"

    @property
    def source(self) -> str | None:
        return self.headers.get("dlq.source.topic")

    @property
    def truncated(self) -> bool:
        """Only a prefix of the original (shared/dead_letters.py): never replayed."""
        return "value" in self.headers.get("dlq.truncated", "")

    @property
    def reason(self) -> str:
        return self.headers.get("dlq.reason", "?")

    @property
    def failed_at(self) -> str:
        return self.headers.get("dlq.failed_at", "")

    def replay_headers(self) -> list[tuple[str, bytes]]:
        kept = [(k, v) for k, v in self.raw_headers if not k.startswith("dlq.")]
        return [*kept, ("dlq.replayed_from", self.where.encode())]


def dlt_of(topic: str) -> str:
    """A dead-letter topic named directly or by its source topic."""
    return topic if topic.endswith(DLT_SUFFIX) else dead_letter_topic(topic)


def parse_where(where: str) -> tuple[str, int, int]:
    """`payments.events.v1.dlt:2:17` -> (topic, partition, offset); ValueError otherwise."""
    topic, partition, offset = where.rsplit(":", 2)
    if not topic.endswith(DLT_SUFFIX) or int(partition) < 0 or int(offset) < 0:
        raise ValueError(f"{where!r} is not <dead-letter topic>:<partition>:<offset>")
    return topic, int(partition), int(offset)


def reader(kafka: KafkaClient) -> AIOKafkaConsumer:
    """A consumer without a group: it reads what it is assigned and commits nothing."""
    return AIOKafkaConsumer(**kafka.options(), group_id=None, enable_auto_commit=False)


async def partitions_of(kafka: KafkaClient, topic: str | None) -> list[TopicPartition]:
    """The partitions of one dead-letter topic, or of every `*.dlt` topic."""
    admin = AIOKafkaAdminClient(**kafka.options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        names = [dlt_of(topic)] if topic else sorted(t for t in existing if t.endswith(DLT_SUFFIX))
        missing = [name for name in names if name not in existing]
        if missing:
            raise UnknownTopic(f"no topic {missing[0]} on {kafka.bootstrap_servers}")
        described = await admin.describe_topics(names) if names else []
    finally:
        await admin.close()
    return sorted(
        TopicPartition(str(t["topic"]), int(p["partition"]))
        for t in described
        for p in t["partitions"]
    )


async def read_range(
    consumer: AIOKafkaConsumer, starts: dict[TopicPartition, int], ends: dict[TopicPartition, int]
) -> list[Any]:
    """The records of each partition from its start offset up to (not incl.) its end."""
    pending = {tp for tp, start in starts.items() if start < ends[tp]}
    for tp in pending:
        consumer.seek(tp, starts[tp])
    found: list[Any] = []
    async with asyncio.timeout(READ_TIMEOUT_S):
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for tp, records in batch.items():
                found += [r for r in records if r.offset < ends[tp]]
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    return found


async def read_dead_letters(
    kafka: KafkaClient, topic: str | None = None, newest: int | None = None
) -> list[DeadLetter]:
    """Every dead letter there is now (of one topic, or of every `*.dlt` topic); with
    `newest`, only the last `newest` of each partition (the newest overall are among them)."""
    partitions = await partitions_of(kafka, topic)
    if not partitions:
        return []
    consumer = reader(kafka)
    await consumer.start()
    try:
        consumer.assign(partitions)
        firsts: dict[TopicPartition, int] = await consumer.beginning_offsets(partitions)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        starts = {
            tp: firsts[tp] if newest is None else max(firsts[tp], ends[tp] - newest)
            for tp in partitions
        }
        return [DeadLetter.of(r) for r in await read_range(consumer, starts, ends)]
    finally:
        await consumer.stop()


async def read_dead_letter(
    kafka: KafkaClient, topic: str, partition: int, offset: int
) -> DeadLetter | None:
    """The dead letter at one offset, or None when there is none."""
    tp = TopicPartition(dlt_of(topic), partition)
    try:
        if tp not in await partitions_of(kafka, topic):
            return None
    except UnknownTopic:
        return None
    consumer = reader(kafka)
    await consumer.start()
    try:
        consumer.assign([tp])
        end = min(offset + 1, (await consumer.end_offsets([tp]))[tp])
        records = await read_range(consumer, {tp: offset}, {tp: end})
        # The offset may be gone (retention) or never have been a record.
        return next((DeadLetter.of(r) for r in records if r.offset == offset), None)
    finally:
        await consumer.stop()


async def replay(kafka: KafkaClient, letters: Iterable[DeadLetter]) -> list[DeadLetter]:
    """Publish each dead letter's bytes and key to its source topic; those that were."""
    producer = AIOKafkaProducer(**kafka.options(), acks="all", enable_idempotence=True)
    await producer.start()
    replayed: list[DeadLetter] = []
    try:
        for letter in letters:
            if letter.source is None or letter.truncated:
                continue  # a truncated one is a prefix: the original is on its source topic
            await producer.send_and_wait(
                letter.source, letter.value, key=letter.key, headers=letter.replay_headers()
            )
            replayed.append(letter)
    finally:
        await producer.stop()
    return replayed
