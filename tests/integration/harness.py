"""A service in-process on the real broker and PostgreSQL, and a reader of topics."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import FastAPI

from shared.events import Message
from shared.settings import ServiceSettings
from tests.infra import KafkaUnderTest, PostgresUnderTest


@asynccontextmanager
async def service_running(
    build_app: Callable[[ServiceSettings], FastAPI],
    name: str,
    kafka: KafkaUnderTest,
    postgres: PostgresUnderTest,
) -> AsyncIterator[FastAPI]:
    """The service's app with its lifespan run: schema, topics, consumers started."""
    settings = ServiceSettings(
        service_name=name,
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        database_url=await postgres.create_database(name),
    )
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        yield app


async def send(kafka: KafkaUnderTest, topic: str, message: Message) -> None:
    await send_raw(kafka, topic, message.model_dump(mode="json"))


async def send_raw(kafka: KafkaUnderTest, topic: str, body: dict[str, Any]) -> None:
    """Publish a JSON body keyed by its line, as any internal system would."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        key = str(body.get("iccid", "")).encode()
        await producer.send_and_wait(topic, json.dumps(body).encode(), key=key)
    finally:
        await producer.stop()


async def messages_about(
    kafka: KafkaUnderTest,
    topic: str,
    order_id: uuid.UUID,
    *,
    count: int = 1,
    within: float = 30.0,
    settle: float = 0.0,
) -> list[dict[str, Any]]:
    """The messages on `topic` for one order, once `count` have arrived.

    With `settle`, keep reading that long after `count` arrived, so a test can
    show that no extra message follows.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=f"test-{uuid.uuid4()}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(within):
            while len(found) < count:
                found += await _read_batch(consumer, order_id)
        if settle:
            loop = asyncio.get_running_loop()
            until = loop.time() + settle
            while loop.time() < until:
                found += await _read_batch(consumer, order_id)
    except TimeoutError:
        raise AssertionError(f"{len(found)} of {count} messages on {topic}: {found}") from None
    finally:
        await consumer.stop()
    return found


async def _read_batch(consumer: AIOKafkaConsumer, order_id: uuid.UUID) -> list[dict[str, Any]]:
    batch = await consumer.getmany(timeout_ms=200)
    found = []
    for record in (record for records in batch.values() for record in records):
        try:
            body = json.loads(record.value)
        except ValueError:
            continue  # not JSON (a test's malformed message): about no order
        if isinstance(body, dict) and body.get("order_id") == str(order_id):
            found.append(body)
    return found
