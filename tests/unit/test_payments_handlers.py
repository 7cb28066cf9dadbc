"""Payments at handler level: a command on payments.commands.v1 in (in memory), its
answer on payments.events.v1 out, the simulator standing in for the provider."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.payments import handlers
from services.payments.backoff import Backoff
from services.payments.context import provide
from services.payments.db import metadata, payments, refunds
from services.payments.stripe_provider import StripeProvider
from services.stripe_simulator.app import build_app
from services.stripe_simulator.ledger import payment_intents
from shared import topics
from shared.events import (
    CancelPayment,
    ChargePayment,
    Message,
    Money,
    PaymentMethod,
    PaymentsCommand,
    RefundPayment,
)
from shared.late_answers import LateAnswers
from tests.clock import Clock
from tests.unit.harness import InMemoryService, in_memory_service, running
from tests.unit.payments_fixtures import adapter_for, simulator_settings

ICCID = "8944500102198304826"
FEE = Money(amount_minor=45, currency="EUR")
TOTAL = Money(amount_minor=1545, currency="EUR")


@asynccontextmanager
async def payments_service(
    tmp_path: Path, provider: StripeProvider
) -> AsyncIterator[InMemoryService]:
    async with in_memory_service("payments", handlers.router, metadata, tmp_path) as service:
        provide(service.broker, provider, Backoff())
        yield service


async def answers_to(
    tmp_path: Path, provider: StripeProvider, *commands: Message
) -> list[dict[str, Any]]:
    async with payments_service(tmp_path, provider) as service:
        answers = service.watch(topics.PAYMENTS_EVENTS)
        async with running(service.broker):
            for command in commands:
                await service.send(topics.PAYMENTS_COMMANDS, command)
    return answers


def charge(
    paying_with: str = "tok_visa", method: PaymentMethod = "card", order_id: uuid.UUID | None = None
) -> ChargePayment:
    order_id = order_id or uuid.uuid4()
    return ChargePayment(
        order_id=order_id, iccid=ICCID, amount=TOTAL, fee=FEE, payment_method=method,
        payment_token=paying_with, idempotency_key=f"{order_id}:charge",
    )  # fmt: skip


def cancel(of: ChargePayment) -> CancelPayment:
    return CancelPayment(
        order_id=of.order_id, iccid=ICCID, idempotency_key=of.idempotency_key, reason="expired"
    )


def refund(of: ChargePayment, amount: Money = TOTAL) -> RefundPayment:
    return RefundPayment(
        order_id=of.order_id, iccid=ICCID, amount=amount,
        idempotency_key=f"{of.order_id}:refund", reason="topup_failed",
    )  # fmt: skip


async def charge_calls(provider_engine: AsyncEngine) -> int:
    async with provider_engine.connect() as conn:
        calls = await conn.scalar(
            select(func.coalesce(func.sum(payment_intents.c.create_calls), 0))
        )
    return int(calls or 0)


def test_each_payments_command_parses_into_its_own_model() -> None:
    commands = TypeAdapter[Any](PaymentsCommand)
    first = charge()
    for command in (first, cancel(first), refund(first)):
        assert commands.validate_python(command.model_dump(mode="json")) == command


async def test_a_card_charge_is_answered_with_payment_captured(
    tmp_path: Path, provider: StripeProvider
) -> None:
    command = charge()
    answers = await answers_to(tmp_path, provider, command)
    assert [a["type"] for a in answers] == ["PaymentCaptured"]
    assert answers[0]["amount"] == TOTAL.model_dump()
    assert answers[0]["fee"] == FEE.model_dump()
    assert answers[0]["provider_reference"].startswith("pi_")
    assert answers[0]["order_id"] == str(command.order_id)


async def test_a_repeated_charge_is_answered_without_charging_again(
    tmp_path: Path, provider: StripeProvider, provider_engine: AsyncEngine
) -> None:
    command = charge()
    redelivered = command.model_copy(update={"event_id": uuid.uuid4()})
    answers = await answers_to(tmp_path, provider, command, redelivered)
    assert [a["type"] for a in answers] == ["PaymentCaptured", "PaymentCaptured"]
    assert answers[0]["event_id"] == answers[1]["event_id"]
    assert await charge_calls(provider_engine) == 1


async def test_a_declined_card_is_answered_with_its_reason(
    tmp_path: Path, provider: StripeProvider
) -> None:
    answers = await answers_to(tmp_path, provider, charge(paying_with="tok_decline"))
    assert [(a["type"], a["reason"]) for a in answers] == [
        ("PaymentDeclined", "insufficient_funds")
    ]


async def test_a_card_number_is_declined_without_reaching_the_provider_or_being_stored(
    tmp_path: Path, provider: StripeProvider, provider_engine: AsyncEngine
) -> None:
    async with payments_service(tmp_path, provider) as service:
        answers = service.watch(topics.PAYMENTS_EVENTS)
        async with running(service.broker):
            await service.send(topics.PAYMENTS_COMMANDS, charge(paying_with="4242424242424242"))
        async with service.sessions() as session:
            stored = await session.scalar(select(payments.c.payment_token))
    assert [(a["type"], a["reason"]) for a in answers] == [
        ("PaymentDeclined", "card_number_not_accepted")
    ]
    assert stored == "************4242"
    assert await charge_calls(provider_engine) == 0


async def test_an_alipay_charge_is_answered_pending(
    tmp_path: Path, provider: StripeProvider
) -> None:
    answers = await answers_to(tmp_path, provider, charge(method="alipay"))
    assert [a["type"] for a in answers] == ["PaymentPending"]
    assert answers[0]["provider_reference"].startswith("pi_")


async def test_a_timed_out_charge_is_unknown_and_not_answered_yet(
    tmp_path: Path, provider: StripeProvider
) -> None:
    async with payments_service(tmp_path, provider) as service:
        answers = service.watch(topics.PAYMENTS_EVENTS)
        async with running(service.broker):
            await service.send(topics.PAYMENTS_COMMANDS, charge(paying_with="tok_timeout"))
        async with service.sessions() as session:
            status = await session.scalar(select(payments.c.status))
    assert answers == []
    assert status == "UNKNOWN"


async def test_cancelling_a_pending_charge_answers_payment_cancelled(
    tmp_path: Path, provider: StripeProvider
) -> None:
    command = charge(paying_with="tok_pending_forever")
    answers = await answers_to(tmp_path, provider, command, cancel(command))
    assert [a["type"] for a in answers] == ["PaymentPending", "PaymentCancelled"]
    assert answers[1]["reason"] == "expired"


async def test_cancelling_a_charge_the_provider_captured_meanwhile_answers_captured(
    tmp_path: Path, provider: StripeProvider, clock: Clock
) -> None:
    command = charge(method="wechat_pay")
    async with payments_service(tmp_path, provider) as service:
        answers = service.watch(topics.PAYMENTS_EVENTS)
        async with running(service.broker):
            await service.send(topics.PAYMENTS_COMMANDS, command)
            clock.now += timedelta(seconds=5)
            await service.send(topics.PAYMENTS_COMMANDS, cancel(command))
    assert [a["type"] for a in answers] == ["PaymentPending", "PaymentCaptured"]


async def test_cancelling_a_settled_charge_repeats_its_answer(
    tmp_path: Path, provider: StripeProvider
) -> None:
    command = charge(paying_with="tok_expired")
    answers = await answers_to(tmp_path, provider, command, cancel(command))
    assert [a["type"] for a in answers] == ["PaymentDeclined", "PaymentDeclined"]


async def test_cancelling_a_charge_never_received_answers_cancelled(
    tmp_path: Path, provider: StripeProvider
) -> None:
    answers = await answers_to(tmp_path, provider, cancel(charge()))
    assert [a["type"] for a in answers] == ["PaymentCancelled"]


async def test_a_refund_returns_the_whole_charge_once_and_repeats_its_answer(
    tmp_path: Path, provider: StripeProvider
) -> None:
    command = charge()
    async with payments_service(tmp_path, provider) as service:
        answers = service.watch(topics.PAYMENTS_EVENTS)
        async with running(service.broker):
            await service.send(topics.PAYMENTS_COMMANDS, command)
            await service.send(topics.PAYMENTS_COMMANDS, refund(command))
            await service.send(topics.PAYMENTS_COMMANDS, refund(command))
        async with service.sessions() as session:
            status = await session.scalar(select(payments.c.status))
            refunded = await session.scalar(select(func.count()).select_from(refunds))
    assert [a["type"] for a in answers] == ["PaymentCaptured", "PaymentRefunded", "PaymentRefunded"]
    assert answers[1] == answers[2] | {"occurred_at": answers[1]["occurred_at"]}
    assert answers[1]["amount"] == TOTAL.model_dump()
    assert answers[1]["provider_reference"].startswith("re_")
    assert (status, refunded) == ("REFUNDED", 1)


async def test_a_refund_of_another_amount_than_charged_publishes_nothing(
    tmp_path: Path, provider: StripeProvider
) -> None:
    command = charge()
    without_fee = Money(amount_minor=1500, currency="EUR")
    answers = await answers_to(tmp_path, provider, command, refund(command, without_fee))
    assert [a["type"] for a in answers] == ["PaymentCaptured"]


async def test_a_refund_of_a_charge_never_captured_publishes_nothing(
    tmp_path: Path, provider: StripeProvider
) -> None:
    command = charge(paying_with="tok_decline")
    answers = await answers_to(tmp_path, provider, command, refund(command), refund(charge()))
    assert [a["type"] for a in answers] == ["PaymentDeclined"]


async def test_answers_slower_than_the_patience_free_the_consumer_and_are_recorded_later(
    tmp_path: Path, clock: Clock
) -> None:
    slow = build_app(simulator_settings(tmp_path, provider_latency_ms=200), clock=clock)
    await slow.state.simulator.ready()
    provider, late = adapter_for(slow), LateAnswers(0.02, 8, "payments")
    captured, declined = charge(), charge(paying_with="tok_decline")
    async with in_memory_service("payments", handlers.router, metadata, tmp_path) as service:
        provide(service.broker, provider, Backoff(), late)
        answers = service.watch(topics.PAYMENTS_EVENTS)
        async with running(service.broker):
            await service.send(topics.PAYMENTS_COMMANDS, captured)
            await service.send(topics.PAYMENTS_COMMANDS, declined)
            assert (answers, late.out) == ([], 2)  # both calls out, neither command held
            for _ in range(300):
                if late.out == 0:
                    break
                await asyncio.sleep(0.01)
            await service.relay()
    await provider.close()
    await slow.state.simulator.engine.dispose()
    assert sorted((a["type"], a["order_id"]) for a in answers) == sorted(
        [("PaymentCaptured", str(captured.order_id)), ("PaymentDeclined", str(declined.order_id))]
    )
    assert await charge_calls(slow.state.simulator.engine) == 2
