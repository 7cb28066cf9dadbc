"""The audit log: every state-changing action an operator or a caller of the services'
APIs takes, who took it, and how it went, one JSON record per action on
`operator.audit.v1` and one JSON log line.

The topic has one partition, so the records are in the order they were written,
and is kept forever (retention.ms=-1): it is the record, not a metric.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict

from aiokafka import AIOKafkaProducer, TopicPartition

from services.operator.dead_letter_store import read_range, reader
from shared.audit import AUDIT_TOPIC, AuditEntry, ensure_audit_topic
from shared.kafka_access import KafkaClient

__all__ = ["AUDIT_TOPIC", "AuditEntry", "AuditLog", "ensure_audit_topic"]

log = logging.getLogger("operator.audit")


class AuditLog:
    """Appends to and reads the audit topic; started and stopped with the app."""

    def __init__(self, kafka: KafkaClient) -> None:
        self.kafka = kafka
        self._producer: AIOKafkaProducer | None = None

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
        entry.logged()

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
