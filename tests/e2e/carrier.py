"""The tests stand in for the carrier: they publish its usage reports themselves."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from shared import topics
from shared.events import UsageReported
from shared.kafka import message_headers


async def publish_usage(producer: AIOKafkaProducer, report: UsageReported) -> None:
    """As the carrier does: keyed by the line, headers type and event_id (its report id)."""
    await producer.send_and_wait(
        topics.CARRIER_USAGE,
        report.model_dump_json().encode(),
        key=report.iccid.encode(),
        headers=[(k, v.encode()) for k, v in message_headers(report).items()],
    )
