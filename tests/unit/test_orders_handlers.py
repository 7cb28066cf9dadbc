"""Orders at handler level: its router in memory (TestKafkaBroker) over SQLite."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from services.orders import handlers
from services.orders import orders as logic
from services.orders.db import metadata, orders, rejected_requests
from services.orders.settings import OrdersSettings
from shared import outbox, topics
from shared.events import (
    Money,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
    TopUpFailed,
    order_id_for,
)
from tests.factories import order_request
from tests.unit.harness import InMemoryService, in_memory_service, running

PRICE = Money(amount_minor=1500, currency="EUR")
FEE = Money(amount_minor=0, currency="EUR")


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[InMemoryService]:
    settings = OrdersSettings(payment_timeout_s=60)
    async with in_memory_service("orders", handlers.router, metadata, tmp_path, settings) as svc:
        yield svc


def ids(request: dict[str, Any]) -> dict[str, Any]:
    return {"order_id": order_id_for(request["request_id"]), "iccid": request["iccid"]}


async def state_of(service: InMemoryService, request: dict[str, Any]) -> str | None:
    async with service.sessions() as session:
        order = await logic.get_order(session, order_id_for(request["request_id"]))
    return order["state"] if order else None


async def test_a_placed_order_is_announced_and_its_total_is_charged(
    service: InMemoryService,
) -> None:
    answers = service.watch(topics.ORDERS_EVENTS)
    charges = service.watch(topics.PAYMENTS_COMMANDS)
    request = order_request(payment_method="paypal")
    async with running(service.broker):
        await service.send(topics.ORDERS_COMMANDS, request)
    assert [a["type"] for a in answers] == ["OrderPlaced"]
    assert answers[0]["total"] == {"amount_minor": 1500 + 51 + 35, "currency": "EUR"}
    assert [c["idempotency_key"] for c in charges] == [f"{ids(request)['order_id']}:charge"]
    assert charges[0]["amount"] == answers[0]["total"]
    assert await state_of(service, request) == "PAYMENT_PENDING"


async def test_a_duplicate_request_makes_one_order_one_charge_and_the_same_answer(
    service: InMemoryService,
) -> None:
    answers = service.watch(topics.ORDERS_EVENTS)
    charges = service.watch(topics.PAYMENTS_COMMANDS)
    request = order_request()
    async with running(service.broker):
        await service.send(topics.ORDERS_COMMANDS, request)
        await service.send(topics.ORDERS_COMMANDS, request)
    async with service.sessions() as session:
        count = await session.scalar(select(func.count()).select_from(orders))
    assert count == 1
    assert len(charges) == 1
    first, second = answers
    assert first["type"] == second["type"] == "OrderPlaced"
    assert {**first, "event_id": None, "occurred_at": None} == {
        **second, "event_id": None, "occurred_at": None,
    }  # fmt: skip


async def test_an_invalid_request_is_rejected_and_creates_nothing(service: InMemoryService) -> None:
    answers = service.watch(topics.ORDERS_EVENTS)
    charges = service.watch(topics.PAYMENTS_COMMANDS)
    request = order_request(email="not-an-email")
    async with running(service.broker):
        await service.send(topics.ORDERS_COMMANDS, request)
        await service.send(topics.ORDERS_COMMANDS, request)
    async with service.sessions() as session:
        count = await session.scalar(select(func.count()).select_from(orders))
        remembered = await session.scalar(select(func.count()).select_from(rejected_requests))
    assert (count, remembered, charges) == (0, 1, [])
    assert [(a["type"], a["reason"]) for a in answers] == [("OrderRejected", "invalid_email")] * 2


async def test_a_malformed_request_with_a_request_id_still_gets_an_answer(
    service: InMemoryService,
) -> None:
    answers = service.watch(topics.ORDERS_EVENTS)
    request = order_request()
    del request["msisdn"]
    async with running(service.broker):
        await service.send(topics.ORDERS_COMMANDS, request)
    assert [a["reason"] for a in answers] == ["malformed_request"]
    assert "msisdn" in answers[0]["message"]


async def test_a_captured_payment_tops_the_line_up_once(service: InMemoryService) -> None:
    topups = service.watch(topics.PROVISIONING_COMMANDS)
    request = order_request(promotion_code="BONUS1GB")
    captured = PaymentCaptured(**ids(request), amount=PRICE, fee=FEE, provider_reference="p")
    async with running(service.broker):
        await service.send(topics.ORDERS_COMMANDS, request)
        await service.send(topics.PAYMENTS_EVENTS, captured)
        await service.send(topics.PAYMENTS_EVENTS, captured)  # redelivered
    assert len(topups) == 1
    assert (topups[0]["data_mb"], topups[0]["bonus_mb"]) == (5120, 1024)
    assert await state_of(service, request) == "TOPUP_PENDING"


async def test_a_declined_payment_fails_the_order(service: InMemoryService) -> None:
    answers = service.watch(topics.ORDERS_EVENTS)
    request = order_request()
    declined = PaymentDeclined(**ids(request), reason="insufficient_funds", message="declined")
    async with running(service.broker):
        await service.send(topics.ORDERS_COMMANDS, request)
        await service.send(topics.PAYMENTS_EVENTS, declined)
    assert [a["type"] for a in answers] == ["OrderPlaced", "OrderPaymentFailed"]
    assert await state_of(service, request) == "PAYMENT_FAILED"


async def test_a_failed_top_up_refunds_the_captured_amount_then_ends_refunded(
    service: InMemoryService,
) -> None:
    refunds = service.watch(topics.PAYMENTS_COMMANDS)
    request = order_request()
    captured = PaymentCaptured(**ids(request), amount=PRICE, fee=FEE, provider_reference="p")
    failed = TopUpFailed(**ids(request), reason="line_suspended", message="x", attempts=1)
    refunded = PaymentRefunded(**ids(request), amount=PRICE, provider_reference="r")
    async with running(service.broker):
        await service.send(topics.ORDERS_COMMANDS, request)
        await service.send(topics.PAYMENTS_EVENTS, captured)
        await service.send(topics.PROVISIONING_EVENTS, failed)
        await service.send(topics.PAYMENTS_EVENTS, refunded)
    refund = next(r for r in refunds if r["type"] == "RefundPayment")
    assert refund["amount"] == PRICE.model_dump()
    assert await state_of(service, request) == "REFUNDED"


async def test_an_unconfirmed_payment_expires_after_its_deadline(service: InMemoryService) -> None:
    request = order_request()
    async with running(service.broker):
        await service.send(topics.ORDERS_COMMANDS, request)
    async with service.sessions.begin() as session:
        early = await logic.expire_overdue(session, datetime.now(UTC))
    async with service.sessions.begin() as session:
        late = await logic.expire_overdue(session, datetime.now(UTC) + timedelta(seconds=61))
    assert early == []
    assert [message.type for _, message in late] == ["CancelPayment", "OrderExpired"]
    assert await state_of(service, request) == "EXPIRED"


async def test_an_order_shows_its_timeline_with_causes(service: InMemoryService) -> None:
    request = order_request()
    async with running(service.broker):
        await service.send(topics.ORDERS_COMMANDS, request)
    async with service.sessions() as session:
        order = await logic.get_order(session, uuid.UUID(str(ids(request)["order_id"])))
    assert order is not None
    assert [(t["from_state"], t["to_state"]) for t in order["timeline"]] == [
        (None, "PLACED"),
        ("PLACED", "PAYMENT_PENDING"),
    ]


async def test_a_top_up_with_no_answer_is_requested_again_backing_off(
    service: InMemoryService,
) -> None:
    topups = service.watch(topics.PROVISIONING_COMMANDS)
    request = order_request()
    captured = PaymentCaptured(**ids(request), amount=PRICE, fee=FEE, provider_reference="p")
    after, most = timedelta(seconds=60), timedelta(hours=1)
    start = datetime.now(UTC)

    async def nudge(at: datetime) -> list[str]:
        async with service.sessions.begin() as session:
            sent = await logic.nudge_stuck(session, at, after, most)
            await outbox.stage(session, sent)
        await service.relay()
        return [message.type for _, message in sent]

    async with running(service.broker):
        await service.send(topics.ORDERS_COMMANDS, request)
        await service.send(topics.PAYMENTS_EVENTS, captured)
        assert await nudge(start) == []  # not stuck yet
        assert await nudge(start + timedelta(seconds=61)) == ["TopUpLine"]
        assert await nudge(start + timedelta(seconds=62)) == []  # just nudged: backing off
        assert await nudge(start + timedelta(seconds=61 + 121)) == ["TopUpLine"]
    assert len(topups) == 3
    assert {t["idempotency_key"] for t in topups} == {f"{ids(request)['order_id']}:topup"}
    assert await state_of(service, request) == "TOPUP_PENDING"
