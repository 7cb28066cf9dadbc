"""How the CLI reaches the system: Kafka for commands, the services' HTTP APIs for reads."""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer


def kafka_servers() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def service_url(name: str, default_port: int) -> str:
    return os.environ.get(f"{name.upper()}_URL", f"http://127.0.0.1:{default_port}")


async def publish(topic: str, body: dict[str, Any], key: str) -> None:
    """Publish as any internal system would: JSON, keyed by the line, acks=all."""
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_servers(), acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, json.dumps(body).encode(), key=key.encode())
    finally:
        await producer.stop()


async def get_json(url: str) -> dict[str, Any] | None:
    """The body of a GET, or None on 404."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body
