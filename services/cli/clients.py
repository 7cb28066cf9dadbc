"""How the CLI reaches the system: Kafka for commands, the services' HTTP APIs for reads."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import httpx
from aiokafka import AIOKafkaProducer

from shared.kafka_access import CREDENTIALS_DIR, PUBLISHER, KafkaClient, client_from_env

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
API_TOKEN_FILE: Final = Path("var") / "api-token"


def token_from(variable: str, file_variable: str, default_file: Path) -> str | None:
    """A token from `variable`, else from the file `file_variable` names, else from
    `default_file` (here, then in the repository `make run` ran from)."""
    if given := os.environ.get(variable):
        return given.strip()
    named = os.environ.get(file_variable)
    candidates = [Path(named)] if named else [default_file, REPO_ROOT / default_file]
    for path in candidates:
        if path.is_file() and (token := path.read_text().strip()):
            return token
    return None


def api_headers() -> dict[str, str]:
    """How the CLI signs in to the services' APIs, as the internal system `make run` made
    for it (`topup-cli`: TOPUP_API_TOKEN, else var/api-token). None: they will say 401."""
    token = token_from("TOPUP_API_TOKEN", "TOPUP_API_TOKEN_FILE", API_TOKEN_FILE)
    return {"Authorization": f"Bearer {token}"} if token else {}


def kafka_client() -> KafkaClient:
    """The CLI publishes as an internal system: KAFKA_USERNAME / KAFKA_PASSWORD, else the
    `publisher` principal's password that `make run` wrote under var/kafka-credentials/."""
    return client_from_env(default_user=PUBLISHER, folder=CREDENTIALS_DIR)


def service_url(name: str, default_port: int) -> str:
    return os.environ.get(f"{name.upper()}_URL", f"http://127.0.0.1:{default_port}")


Publish = Callable[[str, dict[str, Any], str], Awaitable[None]]


@asynccontextmanager
async def publisher() -> AsyncIterator[Publish]:
    """Publish as any internal system would: JSON, keyed by the line, acks=all."""
    producer = AIOKafkaProducer(**kafka_client().options(), acks="all", enable_idempotence=True)
    await producer.start()

    async def send(topic: str, body: dict[str, Any], key: str) -> None:
        await producer.send_and_wait(topic, json.dumps(body).encode(), key=key.encode())

    try:
        yield send
    finally:
        await producer.stop()


async def publish(topic: str, body: dict[str, Any], key: str) -> None:
    async with publisher() as send:
        await send(topic, body, key)


async def get_json(url: str) -> dict[str, Any] | None:
    """The body of a GET, or None on 404."""
    async with httpx.AsyncClient(timeout=10, headers=api_headers()) as client:
        response = await client.get(url)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body
