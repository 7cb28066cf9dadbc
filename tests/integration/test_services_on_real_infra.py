"""Each service in-process on the real broker and PostgreSQL: a command in, its answer out,
and a repeated command answered without doing the work twice."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from services.orders.app import build_app as build_orders
from services.orders.db import orders
from services.payments.app import build_app as build_payments
from services.payments.db import payments
from services.provisioning.app import build_app as build_provisioning
from services.provisioning.db import topups
from shared import topics
from shared.events import ChargePayment, Money, PlaceOrder, TopUpLine, order_id_for
from tests.infra import KafkaUnderTest, PostgresUnderTest
from tests.integration.harness import messages_about, send, service_running

pytestmark = pytest.mark.integration

ICCID = "8944500102198304826"
PRICE = Money(amount_minor=500, currency="EUR")


async def test_orders_stores_a_placed_order_and_asks_for_its_charge(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    async with service_running(build_orders, "orders", kafka, postgres) as app:
        request_id = f"it-{uuid.uuid4()}"
        command = PlaceOrder(
            order_id=order_id_for(request_id), iccid=ICCID, request_id=request_id,
            package_id="eu-1gb-7d",
        )  # fmt: skip
        await send(kafka, topics.ORDERS_COMMANDS, command)
        await send(kafka, topics.ORDERS_COMMANDS, command)
        charges = await messages_about(
            kafka, topics.PAYMENTS_COMMANDS, command.order_id, settle=2.0
        )
        async with app.state.sessions() as session:
            stored = await session.scalar(
                select(func.count()).select_from(orders).where(orders.c.request_id == request_id)
            )
    assert stored == 1
    assert [c["amount"] for c in charges] == [PRICE.model_dump()]


async def test_payments_charges_once_per_idempotency_key_and_repeats_its_answer(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    async with service_running(build_payments, "payments", kafka, postgres) as app:
        order_id = uuid.uuid4()
        command = ChargePayment(
            order_id=order_id, iccid=ICCID, amount=PRICE, idempotency_key=f"{order_id}:charge"
        )
        await send(kafka, topics.PAYMENTS_COMMANDS, command)
        await send(kafka, topics.PAYMENTS_COMMANDS, command)
        answers = await messages_about(kafka, topics.PAYMENTS_EVENTS, order_id, count=2)
        async with app.state.sessions() as session:
            rows = await session.scalar(
                select(func.count()).select_from(payments).where(payments.c.order_id == order_id)
            )
    assert rows == 1
    assert [a["type"] for a in answers] == ["PaymentCaptured", "PaymentCaptured"]


async def test_provisioning_tops_a_line_up_once_per_order(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    async with service_running(build_provisioning, "provisioning", kafka, postgres) as app:
        order_id = uuid.uuid4()
        command = TopUpLine(
            order_id=order_id, iccid=ICCID, data_mb=1024, validity_days=7,
            idempotency_key=f"{order_id}:topup",
        )  # fmt: skip
        await send(kafka, topics.PROVISIONING_COMMANDS, command)
        await send(kafka, topics.PROVISIONING_COMMANDS, command)
        answers = await messages_about(kafka, topics.PROVISIONING_EVENTS, order_id, count=2)
        async with app.state.sessions() as session:
            applied = await session.scalar(
                select(func.count()).select_from(topups).where(topups.c.order_id == order_id)
            )
    assert applied == 1
    assert answers[0]["valid_until"] == answers[1]["valid_until"]
