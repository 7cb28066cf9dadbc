"""Every outcome of the top-up saga, end to end: an internal system publishes a
PlaceOrder on the real broker and the three service processes carry it to the end."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from deploy.local.processes import ServiceProcess
from shared import topics
from shared.events import order_id_for
from tests.credentials import RENEWER
from tests.e2e.conftest import PAYMENT_TIMEOUT_S, SUSPENDED_ICCID
from tests.factories import order_request
from tests.infra import KafkaUnderTest
from tests.integration.harness import messages_about

pytestmark = pytest.mark.e2e

Services = dict[str, ServiceProcess]


async def publish(producer: AIOKafkaProducer, body: dict[str, Any]) -> uuid.UUID:
    await producer.send_and_wait(
        topics.ORDERS_COMMANDS, json.dumps(body).encode(), key=str(body["iccid"]).encode()
    )
    return order_id_for(body["request_id"])


async def poll(
    url: str, done: Callable[[dict[str, Any]], bool], within: float = 30.0
) -> dict[str, Any]:
    """GET `url` until `done(body)`; the last body is in the failure message."""
    deadline = time.monotonic() + within
    body: dict[str, Any] = {}
    async with httpx.AsyncClient(headers=RENEWER) as client:
        while time.monotonic() < deadline:
            response = await client.get(url)
            if response.status_code == 200:
                body = response.json()
                if done(body):
                    return body
            await asyncio.sleep(0.2)
    raise AssertionError(f"{url} did not get there in {within}s; last: {body}")


async def final_order(
    services: Services, order_id: uuid.UUID, within: float = 30.0
) -> dict[str, Any]:
    final = {"COMPLETED", "PAYMENT_FAILED", "REFUNDED", "EXPIRED"}
    url = f"{services['orders'].base_url}/orders/{order_id}"
    return await poll(url, lambda o: o["state"] in final, within)


async def line(services: Services, iccid: str) -> dict[str, Any] | None:
    async with httpx.AsyncClient(headers=RENEWER) as client:
        response = await client.get(f"{services['provisioning'].base_url}/lines/{iccid}")
    return response.json() if response.status_code == 200 else None


def states(order: dict[str, Any]) -> list[str]:
    return [step["to_state"] for step in order["timeline"]]


def test_every_service_reports_its_broker_and_database_reachable(services: Services) -> None:
    for name, process in services.items():
        health = process.health()
        assert health is not None
        assert health["service"] == name
        assert health["checks"]["kafka"] == {"ok": True}
        assert health["checks"]["database"]["ok"] is True


async def test_a_paid_order_tops_the_line_up_and_completes(
    services: Services, producer: AIOKafkaProducer, kafka: KafkaUnderTest
) -> None:
    request = order_request(package_id="eu-5gb-30d", promotion_code="BONUS1GB")
    order_id = await publish(producer, request)

    order = await final_order(services, order_id)
    assert states(order) == ["PLACED", "PAYMENT_PENDING", "PAID", "TOPUP_PENDING", "COMPLETED"]
    assert order["captured"] == order["total"] == {"amount_minor": 1500, "currency": "EUR"}
    balance = await line(services, request["iccid"])
    assert balance is not None
    assert balance["data_remaining_mb"] == 5120 + 1024
    answers = await messages_about(kafka, topics.ORDERS_EVENTS, order_id, count=2)
    assert [a["type"] for a in answers] == ["OrderPlaced", "OrderCompleted"]
    assert answers[1]["data_mb"] == 5120 + 1024
    async with httpx.AsyncClient(headers=RENEWER) as client:
        orders_metrics = (await client.get(f"{services['orders'].base_url}/metrics/")).text
        topup_metrics = (await client.get(f"{services['provisioning'].base_url}/metrics/")).text
    assert 'topup_orders_total{outcome="COMPLETED"}' in orders_metrics
    assert 'topup_topups_total{outcome="applied"}' in topup_metrics
    assert "faststream_received_messages_total" in orders_metrics


async def test_a_declined_payment_fails_the_order_and_tops_nothing_up(
    services: Services, producer: AIOKafkaProducer, kafka: KafkaUnderTest
) -> None:
    request = order_request(payment_token="tok_decline_insufficient")
    order_id = await publish(producer, request)

    order = await final_order(services, order_id)
    assert order["state"] == "PAYMENT_FAILED"
    assert order["captured"] is None
    answers = await messages_about(kafka, topics.ORDERS_EVENTS, order_id, count=2)
    assert answers[1]["type"] == "OrderPaymentFailed"
    assert answers[1]["reason"] == "insufficient_funds"
    assert await line(services, request["iccid"]) is None


async def test_a_pending_payment_completes_once_the_provider_confirms_it(
    services: Services, producer: AIOKafkaProducer
) -> None:
    request = order_request(payment_method="alipay", currency="CNY")
    order_id = await publish(producer, request)

    order = await final_order(services, order_id)
    assert order["state"] == "COMPLETED"
    assert states(order)[:3] == ["PLACED", "PAYMENT_PENDING", "PAYMENT_PENDING"]
    assert "confirmation" in order["timeline"][2]["cause"]
    assert order["fee"] == {"amount_minor": 179, "currency": "CNY"}  # 1.5% of 119.00


async def test_a_payment_never_confirmed_expires_the_order(
    services: Services, producer: AIOKafkaProducer, kafka: KafkaUnderTest
) -> None:
    request = order_request(payment_method="wechat_pay", currency="CNY",
                            payment_token="tok_pending_forever")  # fmt: skip
    order_id = await publish(producer, request)

    order = await final_order(services, order_id, within=PAYMENT_TIMEOUT_S + 20)
    assert order["state"] == "EXPIRED"
    assert order["captured"] is None
    answers = await messages_about(kafka, topics.ORDERS_EVENTS, order_id, count=3)
    assert [a["type"] for a in answers] == ["OrderPlaced", "OrderAwaitingPayment", "OrderExpired"]
    assert answers[1]["next_action"]["type"] == "qr_code", "the storefront shows the code"
    cancelled = await messages_about(kafka, topics.PAYMENTS_EVENTS, order_id, count=2)
    assert "PaymentCancelled" in [m["type"] for m in cancelled]
    assert await line(services, request["iccid"]) is None


async def test_a_top_up_that_fails_for_good_refunds_the_payment_fee_included(
    services: Services, producer: AIOKafkaProducer, kafka: KafkaUnderTest
) -> None:
    request = order_request(iccid=SUSPENDED_ICCID, payment_method="paypal")
    order_id = await publish(producer, request)

    order = await final_order(services, order_id)
    assert states(order)[-3:] == ["TOPUP_PENDING", "REFUND_PENDING", "REFUNDED"]
    assert order["fee"] == {"amount_minor": 86, "currency": "EUR"}
    answers = await messages_about(kafka, topics.ORDERS_EVENTS, order_id, count=3)
    assert [a["type"] for a in answers] == ["OrderPlaced", "OrderAwaitingPayment", "OrderRefunded"]
    assert answers[1]["next_action"]["type"] == "redirect", "PayPal's page"
    assert answers[2]["amount"] == order["total"] == order["captured"]


async def test_a_request_published_three_times_makes_one_order_one_charge_one_top_up(
    services: Services, producer: AIOKafkaProducer, kafka: KafkaUnderTest
) -> None:
    request = order_request(package_id="eu-1gb-7d")
    for _ in range(3):
        order_id = await publish(producer, request)

    order = await final_order(services, order_id)
    assert order["state"] == "COMPLETED"
    answers = await messages_about(kafka, topics.ORDERS_EVENTS, order_id, count=4, settle=2)
    placed = [a for a in answers if a["type"] == "OrderPlaced"]
    assert len(placed) == 3
    assert len({json.dumps({**a, "event_id": 0, "occurred_at": 0}) for a in placed}) == 1
    charges = await messages_about(kafka, topics.PAYMENTS_COMMANDS, order_id, settle=2)
    assert [c["type"] for c in charges] == ["ChargePayment"]
    balance = await line(services, request["iccid"])
    assert balance is not None
    assert [t["order_id"] for t in balance["topups"]] == [str(order_id)]
    assert balance["data_remaining_mb"] == 1024


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"package_id": "moon-1tb"}, "unknown_package"),
        ({"iccid": "8944500102198304827"}, "invalid_iccid"),
        ({"email": "traveller@"}, "invalid_email"),
        ({"msisdn": "0044 7700 900123"}, "invalid_msisdn"),
        ({"currency": "JPY"}, "unsupported_currency"),
        ({"payment_method": "cash"}, "unsupported_payment_method"),
        ({"promotion_code": "SUMMER25"}, "invalid_promotion"),
        ({"payment_token": None}, "malformed_request"),
    ],
)
async def test_an_invalid_request_is_rejected_with_its_reason_and_creates_nothing(
    services: Services,
    producer: AIOKafkaProducer,
    kafka: KafkaUnderTest,
    overrides: dict[str, Any],
    reason: str,
) -> None:
    request = order_request(**overrides)
    order_id = await publish(producer, request)

    [answer] = await messages_about(kafka, topics.ORDERS_EVENTS, order_id)
    assert (answer["type"], answer["reason"]) == ("OrderRejected", reason)
    assert answer["message"]
    url = f"{services['orders'].base_url}/orders"
    found = await poll(f"{url}?request_id={request['request_id']}", lambda _: True)
    assert found["state"] == "REJECTED"
    async with httpx.AsyncClient(headers=RENEWER) as client:
        assert (await client.get(f"{url}/{order_id}")).status_code == 404
