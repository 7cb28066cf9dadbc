"""Payments in-process on the real broker and PostgreSQL, with its settler running and
the real Stripe adapter talking to the Stripe simulator (in process, its ledger in a
PostgreSQL database of its own): each answer payments gives, the simulator's ledger
showing nothing was done twice, and Stripe's webhooks with real signatures."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.payments import payments
from services.payments.app import build_app
from services.payments.db import metadata
from services.payments.db import payments as payments_table
from services.payments.settings import PaymentsSettings
from services.payments.settler import settle_due
from services.stripe_simulator.app import build_app as build_stripe_simulator
from services.stripe_simulator.app import signature_header
from services.stripe_simulator.ledger import payment_intents, webhook_deliveries
from services.stripe_simulator.ledger import refunds as stripe_refunds
from shared import db, topics
from shared.events import ChargePayment, Money, PaymentMethod, RefundPayment
from shared.settings import ServiceSettings
from tests.infra import KafkaUnderTest, PostgresUnderTest
from tests.integration.harness import messages_about, send, service_running
from tests.unit.payments_fixtures import (
    API_KEY,
    STRIPE_TIMEOUT_S,
    adapter_for,
    simulator_settings,
)

pytestmark = pytest.mark.integration

ICCID = "8944500102198304826"
FEE = Money(amount_minor=45, currency="EUR")
TOTAL = Money(amount_minor=1545, currency="EUR")
WEBHOOK = "/webhooks/stripe"
WEBHOOK_SECRET = "whsec_unit"  # the simulator's (tests/unit/payments_fixtures.py)


@asynccontextmanager
async def payments_and_stripe(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> AsyncIterator[tuple[FastAPI, FastAPI]]:
    """Payments with a brisk settler, and the Stripe simulator it talks to in process."""
    stripe = build_stripe_simulator(
        simulator_settings(
            Path("."),
            database_url=await postgres.create_database("stripe"),
            provider_latency_ms=20,
            provider_confirm_after_s=1.0,
            stripe_webhook_url=f"http://payments{WEBHOOK}",
        )
    )
    await stripe.state.simulator.ready()

    def quick_payments(settings: ServiceSettings) -> FastAPI:
        return build_app(
            PaymentsSettings(
                **settings.model_dump(),
                stripe_api_key=API_KEY,
                stripe_webhook_secret=WEBHOOK_SECRET,
                stripe_api_base="http://stripe-simulator",
                stripe_timeout_s=STRIPE_TIMEOUT_S,
                settle_interval_s=0.2,
                settle_backoff_base_s=0.2,
                settle_backoff_max_s=1.0,
            ),
            stripe_transport=httpx.ASGITransport(app=stripe),
        )

    try:
        async with service_running(quick_payments, "payments", kafka, postgres) as app:
            yield app, stripe
    finally:
        await stripe.state.simulator.engine.dispose()


def charge(paying_with: str = "tok_visa", method: PaymentMethod = "card") -> ChargePayment:
    order_id = uuid.uuid4()
    return ChargePayment(
        order_id=order_id, iccid=ICCID, amount=TOTAL, fee=FEE, payment_method=method,
        payment_token=paying_with, idempotency_key=f"{order_id}:charge",
    )  # fmt: skip


async def charge_calls(stripe: FastAPI, key: str) -> Any:
    async with stripe.state.simulator.sessions() as session:
        return await session.scalar(
            select(payment_intents.c.create_calls).where(payment_intents.c.idempotency_key == key)
        )


async def test_a_card_charge_is_captured_and_a_repeat_answered_without_charging_again(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    async with payments_and_stripe(kafka, postgres) as (_app, stripe):
        command = charge()
        await send(kafka, topics.PAYMENTS_COMMANDS, command)
        await send(kafka, topics.PAYMENTS_COMMANDS, command)
        answers = await messages_about(kafka, topics.PAYMENTS_EVENTS, command.order_id, count=2)
        calls = await charge_calls(stripe, command.idempotency_key)
    assert [a["type"] for a in answers] == ["PaymentCaptured", "PaymentCaptured"]
    assert answers[0]["event_id"] == answers[1]["event_id"]
    assert answers[0]["amount"] == TOTAL.model_dump()
    assert calls == 1


async def test_a_declined_card_is_answered_with_its_reason(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    async with payments_and_stripe(kafka, postgres):
        command = charge(paying_with="tok_expired")
        await send(kafka, topics.PAYMENTS_COMMANDS, command)
        answers = await messages_about(kafka, topics.PAYMENTS_EVENTS, command.order_id)
    assert [(a["type"], a["reason"]) for a in answers] == [("PaymentDeclined", "expired_card")]


async def test_an_alipay_charge_is_pending_then_captured_by_the_settler(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    async with payments_and_stripe(kafka, postgres):
        command = charge(method="alipay")
        await send(kafka, topics.PAYMENTS_COMMANDS, command)
        answers = await messages_about(
            kafka, topics.PAYMENTS_EVENTS, command.order_id, count=2, settle=1.0
        )
    assert [a["type"] for a in answers] == ["PaymentPending", "PaymentCaptured"]
    assert answers[0]["provider_reference"] == answers[1]["provider_reference"]
    assert answers[0]["next_action"]["type"] == "redirect"
    assert answers[0]["next_action"]["url"].startswith("https://")


async def test_a_timed_out_charge_is_settled_by_its_status_without_a_second_charge(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    async with payments_and_stripe(kafka, postgres) as (app, stripe):
        command = charge(paying_with="tok_timeout")
        await send(kafka, topics.PAYMENTS_COMMANDS, command)
        answers = await messages_about(kafka, topics.PAYMENTS_EVENTS, command.order_id, settle=1.0)
        calls = await charge_calls(stripe, command.idempotency_key)
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
    async with payments_and_stripe(kafka, postgres) as (_app, stripe):
        command = charge()
        refund = RefundPayment(
            order_id=command.order_id, iccid=ICCID, amount=TOTAL,
            idempotency_key=f"{command.order_id}:refund", reason="topup_failed",
        )  # fmt: skip
        await send(kafka, topics.PAYMENTS_COMMANDS, command)
        await send(kafka, topics.PAYMENTS_COMMANDS, refund)
        await send(kafka, topics.PAYMENTS_COMMANDS, refund)
        answers = await messages_about(kafka, topics.PAYMENTS_EVENTS, command.order_id, count=3)
        async with stripe.state.simulator.sessions() as session:
            refunds_made = await session.scalar(
                select(func.count())
                .select_from(stripe_refunds)
                .where(stripe_refunds.c.idempotency_key == refund.idempotency_key)
            )
    assert [a["type"] for a in answers] == ["PaymentCaptured", "PaymentRefunded", "PaymentRefunded"]
    assert answers[1]["event_id"] == answers[2]["event_id"]
    assert answers[1]["amount"] == TOTAL.model_dump()
    assert refunds_made == 1


async def test_two_settlers_never_work_the_same_payment(
    postgres: PostgresUnderTest, tmp_path: Path
) -> None:
    engine = db.create_engine(await postgres.create_database("payments"))
    stripe = build_stripe_simulator(simulator_settings(tmp_path))
    await stripe.state.simulator.ready()
    provider = adapter_for(stripe)
    try:
        await db.create_schema(engine, metadata)
        sessions: async_sessionmaker[AsyncSession] = db.sessions_for(engine)
        backoff = PaymentsSettings().backoff
        commands = [charge(paying_with="tok_timeout") for _ in range(20)]
        for command in commands:
            assert await payments.charge(sessions, provider, backoff, command) == []
        settled = []
        # Rounds, each later than the last: an answer lost again is asked about again.
        for hours in range(1, 6):
            later = datetime.now(UTC) + timedelta(hours=hours)
            both = await asyncio.gather(
                *(settle_due(sessions, provider, backoff, limit=20, now=later) for _ in range(2))
            )
            settled += [message.order_id for outgoing in both for _, message in outgoing]
            if len(settled) >= len(commands):
                break
    finally:
        await provider.close()
        await stripe.state.simulator.engine.dispose()
        await engine.dispose()
    # Each payment answered once, by one of the two: never both.
    assert sorted(settled) == sorted(c.order_id for c in commands)


# --- Stripe's webhooks, with real signatures -----------------------------------------


def succeeded_event(command: ChargePayment, intent_id: str) -> str:
    intent = {
        "id": intent_id, "object": "payment_intent", "status": "succeeded",
        "amount": TOTAL.amount_minor, "currency": "eur",
        "metadata": {"order_id": str(command.order_id), "idempotency_key": command.idempotency_key},
    }  # fmt: skip
    event = {
        "id": f"evt_{uuid.uuid4().hex[:20]}", "object": "event", "type": "payment_intent.succeeded",
        "created": int(time.time()), "data": {"object": intent}, "livemode": False,
    }  # fmt: skip
    return json.dumps(event)


async def post_webhook(app: FastAPI, payload: str, signature: str) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://payments"
    ) as client:
        return await client.post(
            WEBHOOK,
            content=payload,
            headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
        )


async def payment_status(app: FastAPI, key: str) -> Any:
    async with app.state.sessions() as session:
        return await session.scalar(
            select(payments_table.c.status).where(payments_table.c.idempotency_key == key)
        )


async def test_a_signed_webhook_captures_a_pending_payment_once_and_a_replay_changes_nothing(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    async with payments_and_stripe(kafka, postgres) as (app, _stripe):
        command = charge(paying_with="tok_pending_forever")
        await send(kafka, topics.PAYMENTS_COMMANDS, command)
        [pending] = await messages_about(kafka, topics.PAYMENTS_EVENTS, command.order_id)
        payload = succeeded_event(command, pending["provider_reference"])
        signed = signature_header(payload, WEBHOOK_SECRET)
        first = await post_webhook(app, payload, signed)
        replayed = await post_webhook(app, payload, signed)
        answers = await messages_about(
            kafka, topics.PAYMENTS_EVENTS, command.order_id, count=2, settle=1.0
        )
        status = await payment_status(app, command.idempotency_key)
    assert (first.status_code, first.json()) == (200, {"received": True, "acted": True})
    assert (replayed.status_code, replayed.json()) == (200, {"received": True, "acted": False})
    assert [a["type"] for a in answers] == ["PaymentPending", "PaymentCaptured"]
    assert status == "CAPTURED"


async def test_a_signed_event_about_another_intent_under_our_key_changes_nothing(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    async with payments_and_stripe(kafka, postgres) as (app, _stripe):
        command = charge(paying_with="tok_pending_forever")
        await send(kafka, topics.PAYMENTS_COMMANDS, command)
        await messages_about(kafka, topics.PAYMENTS_EVENTS, command.order_id)
        # Our key in its metadata, but not the intent the payment was answered with.
        payload = succeeded_event(command, f"pi_{uuid.uuid4().hex[:24]}")
        answer = await post_webhook(app, payload, signature_header(payload, WEBHOOK_SECRET))
        status = await payment_status(app, command.idempotency_key)
    assert (answer.status_code, answer.json()) == (200, {"received": True, "acted": False})
    assert status == "PENDING"


@pytest.mark.parametrize(
    ("secret", "age_s", "why"),
    [
        ("whsec_not_ours", 0, "no signature matches"),
        (WEBHOOK_SECRET, 3600, "too old"),
    ],
    ids=["wrong secret", "stale timestamp"],
)
async def test_a_webhook_not_signed_by_stripe_now_is_refused_and_changes_nothing(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest, secret: str, age_s: int, why: str
) -> None:
    async with payments_and_stripe(kafka, postgres) as (app, _stripe):
        command = charge(paying_with="tok_pending_forever")
        await send(kafka, topics.PAYMENTS_COMMANDS, command)
        [pending] = await messages_about(kafka, topics.PAYMENTS_EVENTS, command.order_id)
        payload = succeeded_event(command, pending["provider_reference"])
        refused = await post_webhook(
            app, payload, signature_header(payload, secret, int(time.time()) - age_s)
        )
        unsigned = await post_webhook(app, payload, "")
        status = await payment_status(app, command.idempotency_key)
    assert refused.status_code == 400
    assert why in refused.json()["detail"]
    assert secret not in refused.text
    assert unsigned.status_code == 400
    assert status == "PENDING"


async def test_the_simulators_signed_webhook_reaches_payments_and_unknown_events_are_ignored(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    async with payments_and_stripe(kafka, postgres) as (app, stripe):
        command = charge(method="wechat_pay")
        await send(kafka, topics.PAYMENTS_COMMANDS, command)
        [pending] = await messages_about(kafka, topics.PAYMENTS_EVENTS, command.order_id)
        await asyncio.sleep(1.1)  # the customer scans the code (PROVIDER_CONFIRM_AFTER_S)
        simulator = stripe.state.simulator
        async with simulator.sessions.begin() as session:
            await simulator.confirm_due(session)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            delivered = await simulator.deliver_due(client)
        answers = await messages_about(
            kafka, topics.PAYMENTS_EVENTS, command.order_id, count=2, settle=1.0
        )
        async with simulator.sessions() as session:
            undelivered = await session.scalar(
                select(func.count())
                .select_from(webhook_deliveries)
                .where(webhook_deliveries.c.delivered_at.is_(None))
            )
    assert pending["next_action"]["type"] == "qr_code"
    assert pending["next_action"]["qr_code_data"].startswith("weixin://")
    assert delivered >= 2, "requires_action (ignored) and succeeded"
    assert undelivered == 0
    assert [a["type"] for a in answers] == ["PaymentPending", "PaymentCaptured"]
