"""The audit log: every state-changing action an operator takes, who took it, and how
it went, one JSON record per action on `operator.audit.v1` and one JSON log line.

The topic has one partition, so the records are in the order they were written,
and is kept forever (retention.ms=-1): it is the record, not a metric.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Final

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from services.operator.dead_letter_store import read_range, reader
from shared import topics
from shared.kafka_access import KafkaClient

AUDIT_TOPIC: Final = topics.OPERATOR_AUDIT

log = logging.getLogger("operator.audit")


@dataclass(frozen=True)
class AuditEntry:
    at: str
    operator: str
    action: str
    target: str
    outcome: str
    detail: dict[str, Any]

    @classmethod
    def now(
        cls, operator: str, action: str, target: str, outcome: str, detail: dict[str, Any]
    ) -> AuditEntry:
        return cls(datetime.now(UTC).isoformat(), operator, action, target, outcome, detail)

    @classmethod
    def parse(cls, value: bytes) -> AuditEntry | None:
        try:
            body = json.loads(value)
            return cls(**{name: body[name] for name in cls.__dataclass_fields__})
        except (ValueError, TypeError, KeyError):
            return None  # not written by us: shown nowhere


async def ensure_audit_topic(kafka: KafkaClient) -> None:
    admin = AIOKafkaAdminClient(**kafka.options())
    await admin.start()
    try:
        if AUDIT_TOPIC in set(await admin.list_topics()):
            return
        topic = NewTopic(
            AUDIT_TOPIC,
            num_partitions=1,
            replication_factor=1,
            topic_configs={"retention.ms": "-1"},
        )
        try:
            await admin.create_topics([topic])
        except TopicAlreadyExistsError:
            log.debug("another operator process created the audit topic first")
    finally:
        await admin.close()


class AuditLog:
    """Appends to and reads the audit topic; started and stopped with the app."""

    def __init__(self, kafka: KafkaClient) -> None:
        self.kafka = kafka
        self._producer: AIOKafkaProducer | None = None

    @property
    def bootstrap_servers(self) -> KafkaClient:
        """The broker and the operator's credentials, for the dead-letter store's calls."""
        return self.kafka

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            **self.kafka.options(), acks="all", enable_idempotence=True
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def append(self, entry: AuditEntry) -> None:
        """Durable before it returns: the action is not reported done without its record."""
        if self._producer is None:
            raise RuntimeError("the audit log is not started")
        record = asdict(entry)
        await self._producer.send_and_wait(
            AUDIT_TOPIC, json.dumps(record).encode(), key=entry.operator.encode()
        )
        log.info(
            "%s: %s %s -> %s",
            entry.operator,
            entry.action,
            entry.target,
            entry.outcome,
            extra={"audit": record},
        )

    async def latest(self, limit: int | None = None) -> list[AuditEntry]:
        """The newest `limit` entries (every entry when None), newest first."""
        tp = TopicPartition(AUDIT_TOPIC, 0)
        consumer = reader(self.kafka)
        await consumer.start()
        try:
            consumer.assign([tp])
            first = (await consumer.beginning_offsets([tp]))[tp]
            end = (await consumer.end_offsets([tp]))[tp]
            start = first if limit is None else max(first, end - limit)
            records = await read_range(consumer, {tp: start}, {tp: end})
        finally:
            await consumer.stop()
        entries = (AuditEntry.parse(r.value or b"") for r in reversed(records))
        return [entry for entry in entries if entry is not None]
