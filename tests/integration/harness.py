"""A service in-process on the real broker and PostgreSQL, readers and writers of topics,
and a line topped up through provisioning."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from fastapi import FastAPI
from pydantic import SecretStr

from deploy.local.outside_world import OutsideWorld
from services.carrier_simulator.app import build_app as build_carrier_simulator
from services.carrier_simulator.settings import CarrierSimulatorSettings
from services.stripe_simulator.app import build_app as build_stripe_simulator
from services.stripe_simulator.settings import SimulatorSettings
from shared import limits, topics
from shared.events import Message, TopUpLine
from shared.kafka_access import KafkaClient
from shared.settings import ServiceSettings
from shared.topics import dead_letter_topic
from tests.credentials import OPERATOR
from tests.infra import KafkaUnderTest, PostgresUnderTest
from tests.unit.carrier_fixtures import served


@asynccontextmanager
async def outside_world(folder: Path) -> AsyncIterator[OutsideWorld]:
    """Both simulators served on free local ports, as the processes of their own would
    serve them (real sockets), their ledgers in `folder`; what pairs a service with its
    simulator goes to `service_running(..., outside=...)`."""
    world = OutsideWorld(stripe_url="", carrier_url="", payments_urls=())
    stripe = build_stripe_simulator(
        SimulatorSettings(
            database_url=f"sqlite+aiosqlite:///{folder / 'stripe.db'}",
            stripe_api_key=SecretStr(world.stripe_api_key),
            stripe_webhook_secret=SecretStr(world.stripe_webhook_secret),
            provider_latency_ms=5,
            provider_confirm_after_s=1.0,
        )
    )
    carrier = build_carrier_simulator(
        CarrierSimulatorSettings(
            database_url=f"sqlite+aiosqlite:///{folder / 'carrier.db'}",
            carrier_client_id=world.carrier_client_id,
            carrier_client_secret=SecretStr(world.carrier_client_secret),
            carrier_latency_ms=5,
        )
    )
    async with served(stripe) as stripe_url, served(carrier) as carrier_url:
        yield replace(world, stripe_url=stripe_url, carrier_url=carrier_url)


@asynccontextmanager
async def service_running(
    build_app: Callable[[ServiceSettings], FastAPI],
    name: str,
    kafka: KafkaUnderTest,
    postgres: PostgresUnderTest,
    outside: OutsideWorld | None = None,
    **settings_given: Any,
) -> AsyncIterator[FastAPI]:
    """The service's app with its lifespan run: schema, topics, consumers started; with
    `outside`, payments and provisioning talk to those simulators."""
    settings = ServiceSettings(
        service_name=name,
        **kafka.settings(name),  # the broker, and the service's own principal on it
        database_url=await postgres.create_database(name),
        **settings_given,
    )
    # The service's own settings class reads the rest (where its simulator listens, with
    # which credentials) from the environment while the app is built.
    with environment(kafka.env(name) | (outside.env(name) if outside is not None else {})):
        app = build_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def send(kafka: KafkaUnderTest, topic: str, message: Message) -> None:
    await send_raw(kafka, topic, message.model_dump(mode="json"))


async def send_raw(kafka: KafkaUnderTest, topic: str, body: dict[str, Any]) -> None:
    """Publish a JSON body keyed by its line, as the admin standing in for its sender."""
    await publish_as(kafka.client(), topic, body)


async def publish_as(client: KafkaClient, topic: str, body: dict[str, Any]) -> None:
    """Publish a JSON body keyed by its line, signed in as `client` says."""
    producer = AIOKafkaProducer(**client.options(), acks="all", request_timeout_ms=10_000)
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
        **kafka.options(),
        group_id=None,  # no group: reads every partition and leaves nothing behind
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


Record = Any  # aiokafka's ConsumerRecord (aiokafka ships no type information)


async def produce(kafka: KafkaUnderTest, topic: str, value: bytes, key: bytes) -> tuple[int, int]:
    """Publish raw bytes as any producer might; the (partition, offset) they got."""
    producer = AIOKafkaProducer(**kafka.options(), acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()
    return int(sent.partition), int(sent.offset)


async def records_where(
    kafka: KafkaUnderTest,
    topic: str,
    wanted: Callable[[Record], bool],
    *,
    count: int = 1,
    within: float = 30.0,
) -> list[Record]:
    """The records of `topic` (read from the beginning) that `wanted` picks, once `count` are."""
    consumer = AIOKafkaConsumer(
        topic,
        **kafka.options(),
        group_id=None,  # no group: reads every partition and leaves nothing behind
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[Record] = []
    try:
        async with asyncio.timeout(within):
            while len(found) < count:
                batch = await consumer.getmany(timeout_ms=200)
                found += [r for records in batch.values() for r in records if wanted(r)]
    except TimeoutError:
        raise AssertionError(f"{len(found)} of {count} records on {topic}") from None
    finally:
        await consumer.stop()
    return found


def headers_of(record: Record) -> dict[str, str]:
    return {key: value.decode() for key, value in record.headers}


async def dead_letter_of(kafka: KafkaUnderTest, topic: str, value: bytes) -> Record:
    [record] = await records_where(kafka, dead_letter_topic(topic), lambda r: r.value == value)
    return record


def top_up_line(iccid: str) -> TopUpLine:
    order_id = uuid.uuid4()
    return TopUpLine(
        order_id=order_id, iccid=iccid, package_id="eu-1gb-7d", data_mb=1024,
        bonus_mb=0, validity_days=7, idempotency_key=f"{order_id}:topup",
    )  # fmt: skip


async def topped_up(kafka: KafkaUnderTest, iccid: str) -> str:
    """Top `iccid` up through provisioning; the answer's type."""
    command = top_up_line(iccid)
    await send(kafka, topics.PROVISIONING_COMMANDS, command)
    [answer] = await messages_about(kafka, topics.PROVISIONING_EVENTS, command.order_id)
    return str(answer["type"])


@asynccontextmanager
async def dead_letter_topic_taking(
    kafka: KafkaUnderTest, topic: str, max_bytes: int
) -> AsyncIterator[None]:
    """The topic refuses anything larger than `max_bytes` while the block runs."""
    admin = AIOKafkaAdminClient(**kafka.options())
    await admin.start()
    try:
        await _set(admin, topic, str(max_bytes))
        try:
            yield
        finally:
            await _set(admin, topic, str(limits.BROKER_MAX_MESSAGE_BYTES))
    finally:
        await admin.close()


async def _set(admin: AIOKafkaAdminClient, topic: str, max_bytes: str) -> None:
    resource = ConfigResource(
        ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": max_bytes}
    )
    await admin.alter_configs([resource])


async def get(app: FastAPI, path: str) -> str:
    """A GET on an in-process service's app, as an operator; the body as text."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://orders", headers=OPERATOR
    ) as client:
        return (await client.get(path)).text


async def health_until(
    app: FastAPI, done: Callable[[dict[str, Any]], bool], within: float
) -> dict[str, Any]:
    """An in-process service's /health once `done(body)`; the last body in the failure."""
    deadline = time.monotonic() + within
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = json.loads(await get(app, "/health"))
        if done(body):
            return body
        await asyncio.sleep(0.5)
    raise AssertionError(f"/health did not get there in {within}s: {body}")
