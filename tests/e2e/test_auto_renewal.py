"""Auto-renewal end to end: a line topped up through the saga opts in, the test publishes
the carrier's usage reports to carrier.usage.v1, and the three service processes renew
the line through the same saga (SIMULATION: AUTO_RENEWAL_MAX_ATTEMPTS=2, a 1 s retry
delay, a line sweeper every 0.5 s)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from deploy.local.processes import ServiceProcess
from services.provisioning.renewals import renewal_request_id
from shared import topics
from shared.events import order_id_for
from tests.credentials import RENEWER
from tests.e2e.carrier import publish_usage
from tests.e2e.test_saga_outcomes import final_order, line, poll, publish
from tests.factories import auto_renewal_settings, order_request, usage_report
from tests.infra import KafkaUnderTest
from tests.integration.harness import messages_about

pytestmark = pytest.mark.e2e

Services = dict[str, ServiceProcess]
MAX_ATTEMPTS = 2  # AUTO_RENEWAL_MAX_ATTEMPTS in the e2e SIMULATION


async def topped_up_line(services: Services, producer: AIOKafkaProducer) -> tuple[str, uuid.UUID]:
    """A line with 1 GB for 7 days, through the saga; its ICCID and the order that started
    its package cycle."""
    request = order_request(package_id="eu-1gb-7d")
    order_id = await publish(producer, request)
    assert (await final_order(services, order_id))["state"] == "COMPLETED"
    return request["iccid"], order_id


async def opt_in(services: Services, iccid: str, **settings: str) -> dict[str, Any]:
    body = auto_renewal_settings(**settings)
    async with httpx.AsyncClient(
        headers=RENEWER, base_url=services["provisioning"].base_url
    ) as client:
        response = await client.put(f"/lines/{iccid}/auto-renewal", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def auto_renewal(services: Services, iccid: str) -> dict[str, Any]:
    async with httpx.AsyncClient(
        headers=RENEWER, base_url=services["provisioning"].base_url
    ) as client:
        response = await client.get(f"/lines/{iccid}/auto-renewal")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def orders_of(services: Services, iccid: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(headers=RENEWER, base_url=services["orders"].base_url) as client:
        response = await client.get(f"/lines/{iccid}/orders")
    orders: list[dict[str, Any]] = response.json()["orders"]
    return orders


async def order_of_request(services: Services, request_id: str) -> int:
    """The HTTP status of orders' lookup of `request_id` (404: never placed)."""
    async with httpx.AsyncClient(headers=RENEWER, base_url=services["orders"].base_url) as client:
        return (await client.get("/orders", params={"request_id": request_id})).status_code


async def test_an_opted_in_line_crossing_its_threshold_is_renewed_exactly_once(
    services: Services, producer: AIOKafkaProducer, carrier: AIOKafkaProducer, kafka: KafkaUnderTest
) -> None:
    iccid, first_order = await topped_up_line(services, producer)
    await opt_in(services, iccid, alert="data_used_75")
    crossing = usage_report(iccid, 800)  # 78% of 1024 MB

    await publish_usage(carrier, crossing)
    provisioning = services["provisioning"]
    provisioning.stop()  # mid-way: the report may or may not have been counted yet
    provisioning.start()
    provisioning.wait_healthy()
    await publish_usage(carrier, crossing)  # the carrier sends it again

    renewal = order_id_for(renewal_request_id(iccid, first_order, "data_used_75", 1))
    completed = await final_order(services, renewal, within=60)
    assert completed["state"] == "COMPLETED"
    await asyncio.sleep(2)  # time for anything extra to show up
    assert sorted(str(o["order_id"]) for o in await orders_of(services, iccid)) == sorted(
        [str(first_order), str(renewal)]
    )
    balance = await line(services, iccid)
    assert balance is not None
    assert [t["status"] for t in balance["topups"]] == ["APPLIED", "APPLIED"]
    assert balance["data_remaining_mb"] == 1024 - 800 + 1024
    async with httpx.AsyncClient(headers=RENEWER, base_url=provisioning.base_url) as client:
        cycle = (await client.get(f"/lines/{iccid}/usage")).json()["cycle"]
    assert (cycle["order_id"], cycle["used_mb"]) == (str(renewal), 0)  # a new cycle
    shown = await auto_renewal(services, iccid)
    assert shown["status"] == "active"
    assert [(r["attempt"], r["status"]) for r in shown["renewal_orders"]] == [(1, "completed")]
    alerts = await messages_about(
        kafka, topics.PROVISIONING_LINE_EVENTS, first_order, count=1, settle=1
    )
    assert [a["alert"] for a in alerts] == ["data_used_75"]


async def test_a_declined_renewal_is_retried_to_the_bound_then_auto_renewal_pauses(
    services: Services, producer: AIOKafkaProducer, carrier: AIOKafkaProducer, kafka: KafkaUnderTest
) -> None:
    iccid, first_order = await topped_up_line(services, producer)
    await opt_in(services, iccid, alert="data_used_90", payment_token="tok_decline_insufficient")

    await publish_usage(carrier, usage_report(iccid, 1000))

    request_ids = [
        renewal_request_id(iccid, first_order, "data_used_90", attempt)
        for attempt in range(1, MAX_ATTEMPTS + 1)
    ]
    for request_id in request_ids:
        failed = await final_order(services, order_id_for(request_id), within=60)
        assert failed["state"] == "PAYMENT_FAILED"
    last = order_id_for(request_ids[-1])
    [paused] = await messages_about(kafka, topics.PROVISIONING_LINE_EVENTS, last, count=1, settle=1)
    assert paused["type"] == "AutoRenewalPaused"
    assert (paused["reason"], paused["attempts"], paused["alert"]) == (
        "retries_exhausted", MAX_ATTEMPTS, "data_used_90",
    )  # fmt: skip
    assert "insufficient_funds" in paused["message"]
    shown = await poll(
        f"{services['provisioning'].base_url}/lines/{iccid}/auto-renewal",
        lambda body: body["status"] == "paused",
    )
    assert shown["paused_reason"] == "retries_exhausted"
    assert [(r["attempt"], r["status"]) for r in shown["renewal_orders"]] == [
        (attempt, "failed") for attempt in range(1, MAX_ATTEMPTS + 1)
    ]
    beyond = renewal_request_id(iccid, first_order, "data_used_90", MAX_ATTEMPTS + 1)
    assert await order_of_request(services, beyond) == 404


async def test_an_opted_out_line_is_not_renewed_when_it_crosses(
    services: Services, producer: AIOKafkaProducer, carrier: AIOKafkaProducer, kafka: KafkaUnderTest
) -> None:
    iccid, first_order = await topped_up_line(services, producer)
    await opt_in(services, iccid, alert="data_used_75")
    async with httpx.AsyncClient(
        headers=RENEWER, base_url=services["provisioning"].base_url
    ) as client:
        opted_out = await client.delete(f"/lines/{iccid}/auto-renewal")
    assert opted_out.json()["status"] == "off"

    await publish_usage(carrier, usage_report(iccid, 800))

    [alert] = await messages_about(
        kafka, topics.PROVISIONING_LINE_EVENTS, first_order, count=1, settle=2
    )
    assert alert["alert"] == "data_used_75"  # crossed, and told, but not renewed
    assert [o["order_id"] for o in await orders_of(services, iccid)] == [str(first_order)]
    assert (await auto_renewal(services, iccid))["renewal_orders"] == []
