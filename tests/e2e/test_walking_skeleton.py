"""One order travels orders -> payments -> orders -> provisioning -> orders, through
three separate processes, the real broker and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from deploy.local.processes import ServiceProcess
from shared import topics
from shared.events import PlaceOrder, order_id_for

pytestmark = pytest.mark.e2e

ICCID = "8944500102198304826"


async def wait_for(url: str, done: Any, within: float = 60.0) -> dict[str, Any]:
    """Poll `url` until `done(body)` holds; the last body is in the failure message."""
    deadline = time.monotonic() + within
    body: dict[str, Any] = {}
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            response = await client.get(url)
            if response.status_code == 200:
                body = response.json()
                if done(body):
                    return body
            await asyncio.sleep(0.2)
    raise AssertionError(f"{url} did not get there in {within}s; last: {body}")


def test_every_service_reports_its_broker_and_database_reachable(
    service_processes: dict[str, ServiceProcess],
) -> None:
    for name, process in service_processes.items():
        health = process.health()
        assert health is not None
        assert health["service"] == name
        assert health["checks"]["kafka"] == {"ok": True}
        assert health["checks"]["database"] == {"ok": True, "backend": "postgresql"}


async def test_a_placed_order_travels_through_all_three_services_and_completes(
    service_processes: dict[str, ServiceProcess], producer: AIOKafkaProducer
) -> None:
    request_id = f"skeleton-{uuid.uuid4()}"
    command = PlaceOrder(
        order_id=order_id_for(request_id), iccid=ICCID, request_id=request_id,
        package_id="eu-1gb-7d",
    )  # fmt: skip
    await producer.send_and_wait(
        topics.ORDERS_COMMANDS,
        json.dumps(command.model_dump(mode="json")).encode(),
        key=ICCID.encode(),
    )

    orders_url = service_processes["orders"].base_url
    order = await wait_for(
        f"{orders_url}/orders/{command.order_id}", lambda o: o["state"] == "COMPLETED"
    )
    assert [step["to_state"] for step in order["timeline"]] == [
        "PAYMENT_PENDING",
        "TOPUP_PENDING",
        "COMPLETED",
    ]

    provisioning_url = service_processes["provisioning"].base_url
    line = await wait_for(f"{provisioning_url}/lines/{ICCID}", lambda line: line["topups"])
    assert str(command.order_id) in [t["order_id"] for t in line["topups"]]
