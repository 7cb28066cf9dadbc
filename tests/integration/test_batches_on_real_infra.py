"""Batch consumption (shared/batches.py) on the real broker and PostgreSQL: a burst is
taken in batches, every message of it acted on once, and the group's offsets committed
to the end of each partition."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select

from services.orders.app import build_app
from services.orders.db import orders
from shared import topics
from shared.events import order_id_for
from shared.metrics import BATCH_SIZES, CONSUMED
from shared.topic_layout import ensure_topics
from tests.factories import order_request
from tests.infra import KafkaUnderTest, PostgresUnderTest, unconsumed
from tests.integration.harness import service_running

pytestmark = pytest.mark.integration

BURST = 300
GROUP = f"orders:{topics.ORDERS_COMMANDS}"


def batches_seen(topic: str) -> float:
    """How many partition batches of `topic` this process has handled."""
    for metric in BATCH_SIZES.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count") and sample.labels["topic"] == topic:
                return sample.value
    return 0.0


async def test_a_burst_published_while_orders_is_down_is_placed_in_batches_and_committed(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    await ensure_topics(kafka.client(), topics.ALL_TOPICS)
    requests = [order_request() for _ in range(BURST)]
    producer = AIOKafkaProducer(**kafka.options(), acks="all")
    await producer.start()
    try:
        sent = [
            await producer.send(
                topics.ORDERS_COMMANDS, json.dumps(r).encode(), key=r["iccid"].encode()
            )
            for r in requests
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    ours = [order_id_for(r["request_id"]) for r in requests]
    handled_before = CONSUMED.labels(topics.ORDERS_COMMANDS, "batch")._value.get()
    batches_before = batches_seen(topics.ORDERS_COMMANDS)

    async with service_running(build_app, "orders", kafka, postgres) as app:
        async with asyncio.timeout(60):
            while True:
                async with app.state.sessions() as session:
                    placed = await session.scalar(
                        select(func.count()).select_from(orders).where(orders.c.order_id.in_(ours))
                    )
                if placed == BURST:
                    break
                await asyncio.sleep(0.2)
        async with asyncio.timeout(30):
            while True:
                if await unconsumed(kafka, lambda group: group == GROUP) == 0:
                    break
                await asyncio.sleep(0.2)
        async with app.state.sessions() as session:
            states = await session.execute(
                select(orders.c.state, func.count())
                .where(orders.c.order_id.in_(ours))
                .group_by(orders.c.state)
            )
            assert dict(states.all()) == {"PAYMENT_PENDING": BURST}

    handled = CONSUMED.labels(topics.ORDERS_COMMANDS, "batch")._value.get() - handled_before
    batches = batches_seen(topics.ORDERS_COMMANDS) - batches_before
    assert handled >= BURST  # in batches, none one at a time
    assert batches < BURST / 10  # most batches held many requests
