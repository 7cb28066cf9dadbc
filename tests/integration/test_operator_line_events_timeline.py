"""An order's timeline on the real broker holds the line events that name it (the alerts
and forfeited data of the package cycle its top-up started), and nothing of the
carrier's usage reports, which name no order."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer

from services.operator.timeline import OrderRef, timelines
from shared import topics
from shared.events import DataForfeited, Envelope, LineAlertRaised, UsageReported
from shared.kafka import message_headers
from shared.topic_layout import ensure_topics
from tests.factories import random_iccid
from tests.infra import KafkaUnderTest

pytestmark = pytest.mark.integration


async def publish(kafka: KafkaUnderTest, topic: str, messages: list[Envelope]) -> None:
    """As the outbox relay (or the carrier) publishes: keyed by the line, with headers."""
    producer = AIOKafkaProducer(**kafka.options(), acks="all")
    await producer.start()
    try:
        for message in messages:
            body = message.model_dump(mode="json")
            await producer.send_and_wait(
                topic,
                json.dumps(body).encode(),
                key=str(body["iccid"]).encode(),
                headers=[(k, v.encode()) for k, v in message_headers(message).items()],
            )
    finally:
        await producer.stop()


def alert_of(order_id: uuid.UUID, iccid: str, now: datetime) -> LineAlertRaised:
    return LineAlertRaised(
        order_id=order_id, iccid=iccid, alert="data_used_90", kind="data_used",
        cycle_started_at=now, data_quota_mb=1000, data_used_mb=912, data_remaining_mb=88,
        valid_until=now + timedelta(days=30),
    )  # fmt: skip


async def test_an_orders_timeline_shows_its_line_events_but_no_usage_report(
    kafka: KafkaUnderTest,
) -> None:
    await ensure_topics(kafka.client(), topics.ALL_TOPICS)
    now = datetime.now(UTC)
    iccid, order_id, next_order = random_iccid(), uuid.uuid4(), uuid.uuid4()
    forfeited = DataForfeited(order_id=order_id, iccid=iccid, forfeited_mb=88, valid_until=now)
    usage = UsageReported(
        event_id=uuid.uuid4(), iccid=iccid, used_mb=35, period_start=now, period_end=now
    )
    await publish(kafka, topics.CARRIER_USAGE, [usage])
    await publish(
        kafka,
        topics.PROVISIONING_LINE_EVENTS,
        [alert_of(order_id, iccid, now), forfeited, alert_of(next_order, iccid, now)],
    )

    ref = OrderRef(str(order_id), f"req-{order_id}", iccid, now - timedelta(seconds=5))
    found = await timelines(kafka.client("operator"), [ref], timedelta(minutes=1), 1000)

    assert [(m["topic"], m["type"], m["summary"]) for m in found[str(order_id)]] == [
        (
            topics.PROVISIONING_LINE_EVENTS,
            "LineAlertRaised",
            "LineAlertRaised alert data_used_90: 912 of 1000 MB used",
        ),
        (topics.PROVISIONING_LINE_EVENTS, "DataForfeited", "DataForfeited forfeited 88 MB"),
    ]
