"""The local Kafka broker (deploy/local/kafka.py) is a real broker: it stores, serves, survives
a crash, and leaves no process behind."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from deploy.local.kafka import LocalKafka


async def _produce(bootstrap_servers: str, topic: str, *values: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    await producer.start()
    try:
        for value in values:
            # The topic does not exist yet: the broker auto-creates it on first use.
            await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


async def _consume(bootstrap_servers: str, topic: str, count: int) -> list[bytes]:
    # A fresh group each time, reading from the start, so every call sees the whole topic.
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(30):
            while len(values) < count:
                batches = await consumer.getmany(timeout_ms=1000)
                values += [m.value for messages in batches.values() for m in messages]
    finally:
        await consumer.stop()
    return values


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.integration
@pytest.mark.asyncio
async def test_local_kafka_serves_survives_a_kill_and_stops(tmp_path: Path) -> None:
    topic = "local-kafka-test"
    with LocalKafka(tmp_path / "kafka") as kafka:
        assert kafka.bootstrap_servers == f"127.0.0.1:{kafka.port}"
        first_pid = kafka.pid
        assert first_pid is not None

        await _produce(kafka.bootstrap_servers, topic, b"before-crash")
        assert await _consume(kafka.bootstrap_servers, topic, 1) == [b"before-crash"]

        kafka.kill()
        assert not _process_exists(first_pid)
        kafka.start()  # same data dir and ports: the data is still there
        await _produce(kafka.bootstrap_servers, topic, b"after-restart")
        received = await _consume(kafka.bootstrap_servers, topic, 2)
        assert received == [b"before-crash", b"after-restart"]
        pid = kafka.pid
        assert pid is not None

    assert not kafka.running
    assert not _process_exists(pid)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # nothing left in its process group either
    kafka.stop()  # idempotent
