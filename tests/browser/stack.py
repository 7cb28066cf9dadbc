"""The running stack the dashboard and command-line tests share, and the traffic they
drive through it: orders placed as an internal system would, and dead letters."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaProducer

from deploy.local.processes import ServiceProcess
from shared import topics
from shared.events import order_id_for
from shared.kafka_access import PUBLISHER, writers_of
from tests.factories import order_request, random_iccid
from tests.infra import KafkaUnderTest

T = TypeVar("T")
ENDED = {"COMPLETED", "PAYMENT_FAILED", "REFUNDED", "EXPIRED", "REJECTED"}


@dataclass(frozen=True)
class Stack:
    kafka: KafkaUnderTest
    services: dict[str, ServiceProcess]
    operator: ServiceProcess
    name: str  # the signed-in operator
    token: str

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka.bootstrap_servers

    async def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The operator API, with this operator's token."""
        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(base_url=self.operator.base_url, timeout=30) as client:
            return await client.request(method, path, headers=headers, **kwargs)

    async def order(self, order_id: uuid.UUID) -> dict[str, Any] | None:
        headers = {"Authorization": f"Bearer {self.token}"}  # an operator: reads, too
        async with httpx.AsyncClient(base_url=self.services["orders"].base_url) as client:
            response = await client.get(f"/orders/{order_id}", headers=headers)
        return response.json() if response.status_code == 200 else None


@dataclass(frozen=True)
class Placed:
    request: dict[str, Any]

    @property
    def order_id(self) -> uuid.UUID:
        return order_id_for(self.request["request_id"])

    @property
    def request_id(self) -> str:
        return str(self.request["request_id"])

    @property
    def iccid(self) -> str:
        return str(self.request["iccid"])


@dataclass(frozen=True)
class Traffic:
    completed: list[Placed]
    stuck: Placed
    dead_letter: dict[str, Any]  # as GET /api/dead-letters lists it


async def eventually(
    check: Callable[[], Awaitable[T | None]], what: str, within: float = 60.0
) -> T:
    """The first non-None answer of `check`, asked every 0.3 s for up to `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if (answer := await check()) is not None:
            return answer
        await asyncio.sleep(0.3)
    raise AssertionError(f"{what}: not within {within}s")


async def publish(
    stack: Stack, value: bytes, key: str, topic: str = topics.ORDERS_COMMANDS
) -> None:
    """Publish as its sender would, keyed by the line: an internal system places orders,
    any other message comes from the service that owns its topic."""
    writers = writers_of(topic)
    sender = PUBLISHER if PUBLISHER in writers else writers[0]
    producer = AIOKafkaProducer(**stack.kafka.options(sender), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key.encode())
    finally:
        await producer.stop()


async def place(stack: Stack, **overrides: Any) -> Placed:
    return await send(stack, Placed(order_request(**overrides)))


async def send(stack: Stack, placed: Placed) -> Placed:
    await publish(stack, json.dumps(placed.request).encode(), placed.iccid)
    return placed


async def reaches(stack: Stack, placed: Placed, states: set[str]) -> dict[str, Any]:
    async def in_state() -> dict[str, Any] | None:
        order = await stack.order(placed.order_id)
        return order if order is not None and order["state"] in states else None

    return await eventually(in_state, f"order {placed.order_id} in {states}")


async def new_dead_letter(stack: Stack) -> dict[str, Any]:
    """A PlaceOrder that is not JSON, dead-lettered by orders, as the operator lists it."""
    marker = uuid.uuid4().hex.translate(str.maketrans("0123456789", "ghijklmnop"))  # no digits
    await publish(stack, f"{{not json {marker}".encode(), random_iccid())
    return await listed_dead_letter(stack, lambda d: marker in d["payload_preview"])


async def listed_dead_letter(
    stack: Stack, matches: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The newest dead letter the operator lists that `matches`."""

    async def listed() -> dict[str, Any] | None:
        response = await stack.api("GET", "/api/dead-letters", params={"limit": 1000})
        found = [d for d in response.json()["dead_letters"] if matches(d)]
        return found[0] if found else None

    return await eventually(listed, "the dead letter")


async def drive_traffic(stack: Stack) -> Traffic:
    completed = [
        await place(stack),
        await place(stack, payment_method="paypal", package_id="eu-1gb-7d"),
        await place(stack, package_id="eu-5gb-30d", promotion_code="BONUS1GB"),
    ]
    stuck = await place(stack, payment_token="tok_pending_forever")
    dead_letter = await new_dead_letter(stack)
    for placed in completed:
        order = await reaches(stack, placed, ENDED)
        assert order["state"] == "COMPLETED", order
    await reaches(stack, stuck, {"PAYMENT_PENDING"})
    return Traffic(completed, stuck, dead_letter)
