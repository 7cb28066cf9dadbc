"""Orders in-process on the real broker and PostgreSQL, answered by hand in place of
payments and provisioning: each step of the saga, as other services see it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.orders.app import build_app
from services.orders.settings import OrdersSettings
from shared import topics
from shared.events import LineToppedUp, Money, PaymentCaptured, order_id_for
from shared.settings import ServiceSettings
from tests.credentials import OPERATOR
from tests.factories import order_request
from tests.infra import KafkaUnderTest, PostgresUnderTest
from tests.integration.harness import messages_about, send, send_raw, service_running

pytestmark = pytest.mark.integration


def orders_with_short_deadline(settings: ServiceSettings) -> FastAPI:
    return build_app(
        OrdersSettings(**settings.model_dump(), payment_timeout_s=2, expiry_sweep_interval_s=0.2)
    )


async def order_state(app: FastAPI, order_id: object, within: float = 15.0) -> dict[str, Any]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://orders", headers=OPERATOR
    ) as client:
        async with asyncio.timeout(within):
            while True:
                response = await client.get(f"/orders/{order_id}")
                if response.status_code == 200:
                    return dict(response.json())
                await asyncio.sleep(0.1)


async def test_orders_drives_a_paid_order_to_completion(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    async with service_running(orders_with_short_deadline, "orders", kafka, postgres) as app:
        request = order_request(payment_method="paypal")
        order_id = order_id_for(request["request_id"])
        await send_raw(kafka, topics.ORDERS_COMMANDS, request)

        [charge] = await messages_about(kafka, topics.PAYMENTS_COMMANDS, order_id)
        amount = Money.model_validate(charge["amount"])
        fee = Money.model_validate(charge["fee"])
        ids = {"order_id": order_id, "iccid": request["iccid"]}
        captured = PaymentCaptured(**ids, amount=amount, fee=fee, provider_reference="p1")
        await send(kafka, topics.PAYMENTS_EVENTS, captured)
        [top_up] = await messages_about(kafka, topics.PROVISIONING_COMMANDS, order_id)
        assert top_up["idempotency_key"] == f"{order_id}:topup"
        until = datetime(2026, 12, 24, tzinfo=UTC)
        topped_up = LineToppedUp(**ids, data_mb=5120, valid_until=until, data_remaining_mb=5120)
        await send(kafka, topics.PROVISIONING_EVENTS, topped_up)

        answers = await messages_about(kafka, topics.ORDERS_EVENTS, order_id, count=2)
        order = await order_state(app, order_id)
    assert [a["type"] for a in answers] == ["OrderPlaced", "OrderCompleted"]
    assert order["state"] == "COMPLETED"
    assert order["captured"] == charge["amount"]


async def test_orders_expires_an_unconfirmed_payment_and_cancels_it(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    async with service_running(orders_with_short_deadline, "orders", kafka, postgres):
        request = order_request()
        order_id = order_id_for(request["request_id"])
        await send_raw(kafka, topics.ORDERS_COMMANDS, request)
        commands = await messages_about(kafka, topics.PAYMENTS_COMMANDS, order_id, count=2)
        answers = await messages_about(kafka, topics.ORDERS_EVENTS, order_id, count=2)
    assert [c["type"] for c in commands] == ["ChargePayment", "CancelPayment"]
    assert [a["type"] for a in answers] == ["OrderPlaced", "OrderExpired"]
