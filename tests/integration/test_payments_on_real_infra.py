"""Payments in-process on the real broker and PostgreSQL, with its settler running:
each answer it gives, and the provider's ledger showing nothing was done twice."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.payments import payments
from services.payments.app import build_app
from services.payments.db import metadata
from services.payments.db import payments as payments_table
from services.payments.provider_simulator import (
    ProviderSimulator,
    simulated_charges,
    simulated_refunds,
)
from services.payments.settings import PaymentsSettings
from services.payments.settler import settle_due
from shared import db, topics
from shared.events import ChargePayment, Money, PaymentMethod, RefundPayment
from shared.settings import ServiceSettings
from tests.infra import KafkaUnderTest, PostgresUnderTest
from tests.integration.harness import messages_about, send, service_running

pytestmark = pytest.mark.integration

ICCID = "8944500102198304826"
FEE = Money(amount_minor=45, currency="EUR")
TOTAL = Money(amount_minor=1545, currency="EUR")


def quick_payments(settings: ServiceSettings) -> FastAPI:
    """Payments with a brisk provider and settler, so a test waits seconds, not minutes."""
    return build_app(
        PaymentsSettings(
            **settings.model_dump(),
            provider_latency_ms=20,
            provider_confirm_after_s=1.0,
            settle_interval_s=0.2,
            settle_backoff_base_s=0.2,
            settle_backoff_max_s=1.0,
        )
    )


def charge(paying_with: str = "tok_visa", method: PaymentMethod = "card") -> ChargePayment:
    order_id = uuid.uuid4()
    return ChargePayment(
        order_id=order_id, iccid=ICCID, amount=TOTAL, fee=FEE, payment_method=method,
        payment_token=paying_with, idempotency_key=f"{order_id}:charge",
    )  # fmt: skip


async def charge_calls(app: FastAPI, key: str) -> Any:
    async with app.state.sessions() as session:
        return await session.scalar(
            select(simulated_charges.c.charge_calls).where(
                simulated_charges.c.idempotency_key == key
            )
        )


async def test_a_card_charge_is_captured_and_a_repeat_answered_without_charging_again(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    async with service_running(quick_payments, "payments", kafka, postgres) as app:
        command = charge()
        await send(kafka, topics.PAYMENTS_COMMANDS, command)
        await send(kafka, topics.PAYMENTS_COMMANDS, command)
        answers = await messages_about(kafka, topics.PAYMENTS_EVENTS, command.order_id, count=2)
        calls = await charge_calls(app, command.idempotency_key)
    assert [a["type"] for a in answers] == ["PaymentCaptured", "PaymentCaptured"]
    assert answers[0]["event_id"] == answers[1]["event_id"]
    assert answers[0]["amount"] == TOTAL.model_dump()
    assert calls == 1


async def test_a_declined_card_is_answered_with_its_reason(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    async with service_running(quick_payments, "payments", kafka, postgres):
        command = charge(paying_with="tok_expired")
        await send(kafka, topics.PAYMENTS_COMMANDS, command)
        answers = await messages_about(kafka, topics.PAYMENTS_EVENTS, command.order_id)
    assert [(a["type"], a["reason"]) for a in answers] == [("PaymentDeclined", "card_expired")]


async def test_an_alipay_charge_is_pending_then_captured_by_the_settler(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    async with service_running(quick_payments, "payments", kafka, postgres):
        command = charge(method="alipay")
        await send(kafka, topics.PAYMENTS_COMMANDS, command)
        answers = await messages_about(
            kafka, topics.PAYMENTS_EVENTS, command.order_id, count=2, settle=1.0
        )
    assert [a["type"] for a in answers] == ["PaymentPending", "PaymentCaptured"]
    assert answers[0]["provider_reference"] == answers[1]["provider_reference"]


async def test_a_timed_out_charge_is_settled_by_its_status_without_a_second_charge(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    async with service_running(quick_payments, "payments", kafka, postgres) as app:
        command = charge(paying_with="tok_timeout")
        await send(kafka, topics.PAYMENTS_COMMANDS, command)
        answers = await messages_about(kafka, topics.PAYMENTS_EVENTS, command.order_id, settle=1.0)
        calls = await charge_calls(app, command.idempotency_key)
        async with app.state.sessions() as session:
            status = await session.scalar(
                select(payments_table.c.status).where(
                    payments_table.c.idempotency_key == command.idempotency_key
                )
            )
    assert [a["type"] for a in answers] == ["PaymentCaptured"]
    assert (calls, status) == (1, "CAPTURED")


async def test_a_captured_charge_is_refunded_once(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    async with service_running(quick_payments, "payments", kafka, postgres) as app:
        command = charge()
        refund = RefundPayment(
            order_id=command.order_id, iccid=ICCID, amount=TOTAL,
            idempotency_key=f"{command.order_id}:refund", reason="topup_failed",
        )  # fmt: skip
        await send(kafka, topics.PAYMENTS_COMMANDS, command)
        await send(kafka, topics.PAYMENTS_COMMANDS, refund)
        await send(kafka, topics.PAYMENTS_COMMANDS, refund)
        answers = await messages_about(kafka, topics.PAYMENTS_EVENTS, command.order_id, count=3)
        async with app.state.sessions() as session:
            refunds_made = await session.scalar(
                select(func.count())
                .select_from(simulated_refunds)
                .where(simulated_refunds.c.charge_key == command.idempotency_key)
            )
    assert [a["type"] for a in answers] == ["PaymentCaptured", "PaymentRefunded", "PaymentRefunded"]
    assert answers[1]["event_id"] == answers[2]["event_id"]
    assert answers[1]["amount"] == TOTAL.model_dump()
    assert refunds_made == 1


async def test_two_settlers_never_work_the_same_payment(postgres: PostgresUnderTest) -> None:
    engine = db.create_engine(await postgres.create_database("payments"))
    try:
        await db.create_schema(engine, metadata)
        sessions: async_sessionmaker[AsyncSession] = db.sessions_for(engine)
        provider = ProviderSimulator(engine)
        backoff = PaymentsSettings().backoff
        commands = [charge(paying_with="tok_timeout") for _ in range(20)]
        for command in commands:
            assert await payments.charge(sessions, provider, backoff, command) == []
        later = datetime.now(UTC) + timedelta(hours=1)
        both = await asyncio.gather(
            *(settle_due(sessions, provider, backoff, limit=20, now=later) for _ in range(2))
        )
    finally:
        await engine.dispose()
    settled = [message.order_id for outgoing in both for _, message in outgoing]
    assert sorted(settled) == sorted(c.order_id for c in commands)
