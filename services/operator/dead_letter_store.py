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
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka_access import KafkaClient
from shared.topics import DEAD_LETTER_TOPICS, dead_letter_topic

DLT_SUFFIX: Final = dead_letter_topic("")
READ_TIMEOUT_S: Final = 60.0
RUN_GAP: Final = 200  # dead letters this close in a partition are read in one go
MAX_PARTITION: Final = 2**31 - 1  # Kafka's partition numbers are int32
_NUMBER: Final = re.compile(r"[0-9]{1,18}")  # ASCII digits only; an offset is an int64


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
        """Where a replay goes: the topic this dead-letter topic is named after (`X.dlt`
        back to `X`), when that is one of the contract's topics; never a header's say."""
        return source_of(self.topic)

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


def source_of(dlt: str) -> str | None:
    """`X` for the dead-letter topic `X.dlt` of a contract topic; else None."""
    if dlt not in DEAD_LETTER_TOPICS:
        return None
    return dlt.removesuffix(DLT_SUFFIX)


def dlt_of(topic: str) -> str:
    """A dead-letter topic named directly or by its source topic."""
    return topic if topic.endswith(DLT_SUFFIX) else dead_letter_topic(topic)


def parse_where(where: str) -> tuple[str, int, int]:
    """`payments.events.v1.dlt:2:17` -> (topic, partition, offset); ValueError otherwise."""
    topic, partition, offset = where.rsplit(":", 2)
    if (
        topic not in DEAD_LETTER_TOPICS
        or not _NUMBER.fullmatch(partition)
        or not _NUMBER.fullmatch(offset)
        or int(partition) > MAX_PARTITION
    ):
        raise ValueError("an id is <dead-letter topic of the contract>:<partition>:<offset>")
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
        names = [dlt_of(topic)] if topic else sorted(existing.intersection(DEAD_LETTER_TOPICS))
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


async def read_dead_letters_at(
    kafka: KafkaClient, wheres: Iterable[tuple[str, int, int]]
) -> dict[tuple[str, int, int], DeadLetter]:
    """The dead letters at these (topic, partition, offset), with one consumer: each
    partition's offsets read in runs (offsets close together in one read). Those not
    there (no such partition, gone with retention, never written) are left out."""
    wanted: dict[TopicPartition, set[int]] = {}
    for topic, partition, offset in wheres:
        wanted.setdefault(TopicPartition(dlt_of(topic), partition), set()).add(offset)
    if not wanted:
        return {}
    try:
        present = set(await partitions_of(kafka, None))
    except UnknownTopic:
        return {}
    wanted = {tp: offsets for tp, offsets in wanted.items() if tp in present}
    if not wanted:
        return {}  # no such partition: nothing to read (and no consumer to start)
    found: dict[tuple[str, int, int], DeadLetter] = {}
    consumer = reader(kafka)
    await consumer.start()
    try:
        consumer.assign(list(wanted))
        ends: dict[TopicPartition, int] = await consumer.end_offsets(list(wanted))
        for tp, offsets in wanted.items():
            for first, last in _runs(sorted(o for o in offsets if o < ends[tp])):
                for record in await read_range(consumer, {tp: first}, {tp: last + 1}):
                    if record.offset in offsets:
                        letter = DeadLetter.of(record)
                        found[(letter.topic, letter.partition, letter.offset)] = letter
    finally:
        await consumer.stop()
    return found


def _runs(offsets: list[int], gap: int = RUN_GAP) -> list[tuple[int, int]]:
    """Sorted offsets as (first, last) runs: a gap of more than `gap` starts a new run."""
    runs: list[tuple[int, int]] = []
    for offset in offsets:
        if runs and offset - runs[-1][1] <= gap:
            runs[-1] = (runs[-1][0], offset)
        else:
            runs.append((offset, offset))
    return runs


async def replay(kafka: KafkaClient, letters: Iterable[DeadLetter]) -> list[DeadLetter]:
    """Publish each dead letter's bytes and key to its source topic; those that were."""
    producer = AIOKafkaProducer(**kafka.options(), acks="all", enable_idempotence=True)
    await producer.start()
    sent: list[tuple[DeadLetter, asyncio.Future[Any]]] = []
    try:
        for letter in letters:
            if letter.source is None or letter.truncated:
                continue  # a truncated one is a prefix: the original is on its source topic
            acked = await producer.send(
                letter.source, letter.value, key=letter.key, headers=letter.replay_headers()
            )
            sent.append((letter, acked))
        await asyncio.gather(*(acked for _letter, acked in sent))  # batched, all acked
    finally:
        await producer.stop()
    return [letter for letter, _acked in sent]
