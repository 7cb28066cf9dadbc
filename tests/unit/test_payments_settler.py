"""The settler settles what no answer settled: pending and unknown charges, charges
left NEW by a crash, refunds whose answer was lost, always by asking about the same
idempotency key, never by charging again blindly. Plain functions over SQLite."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.payments import payments
from services.payments.backoff import Backoff
from services.payments.db import get_payment, metadata
from services.payments.db import payments as payments_table
from services.payments.provider import ProviderResult, ProviderTimeout, ProviderUnavailable
from services.payments.settler import settle_due
from services.payments.states import PaymentStatus
from services.payments.stripe_provider import StripeProvider
from services.stripe_simulator.ledger import payment_intents
from services.stripe_simulator.ledger import refunds as stripe_refunds
from shared import db
from shared.events import (
    CancelPayment,
    ChargePayment,
    Money,
    PaymentMethod,
    RefundPayment,
)
from shared.kafka import Outgoing
from tests.clock import Clock
from tests.unit.harness import sqlite_sessions

ICCID = "8944500102198304826"
FEE = Money(amount_minor=45, currency="EUR")
TOTAL = Money(amount_minor=1545, currency="EUR")
BACKOFF = Backoff(base_s=1.0, max_s=8.0, new_grace_s=10.0)

Sessions = async_sessionmaker[AsyncSession]


class FailingProvider:
    """The real adapter, except that one kind of call fails: before it reaches the
    provider, or after the provider acted (the answer, or the process, is lost)."""

    def __init__(
        self,
        adapter: StripeProvider,
        call: str,
        error: Exception,
        *,
        after_acting: bool = False,
        key: str | None = None,
    ) -> None:
        self.adapter, self.call, self.error = adapter, call, error
        self.after_acting, self.key = after_acting, key

    async def charge(
        self, key: str, amount: Money, fee: Money, method: PaymentMethod, token: str
    ) -> ProviderResult:
        return await self._through(
            "charge", key, lambda: self.adapter.charge(key, amount, fee, method, token)
        )

    async def status(self, key: str, reference: str | None) -> ProviderResult:
        return await self._through("status", key, lambda: self.adapter.status(key, reference))

    async def cancel(self, key: str, reference: str | None) -> ProviderResult:
        return await self._through("cancel", key, lambda: self.adapter.cancel(key, reference))

    async def refund(self, refund_key: str, charge_reference: str, amount: Money) -> ProviderResult:
        return await self._through(
            "refund", refund_key, lambda: self.adapter.refund(refund_key, charge_reference, amount)
        )

    async def refund_status(self, refund_key: str, charge_reference: str) -> ProviderResult:
        return await self._through(
            "refund_status",
            refund_key,
            lambda: self.adapter.refund_status(refund_key, charge_reference),
        )

    async def _through(
        self, call: str, key: str, act: Callable[[], Awaitable[ProviderResult]]
    ) -> ProviderResult:
        if call != self.call or self.key not in (None, key):
            return await act()
        if self.after_acting:
            await act()
        raise self.error


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[Sessions]:
    async with sqlite_sessions(tmp_path / "payments.db", metadata) as sessions:
        yield sessions


def charge(paying_with: str = "tok_visa", method: PaymentMethod = "card") -> ChargePayment:
    order_id = uuid.uuid4()
    return ChargePayment(
        order_id=order_id, iccid=ICCID, amount=TOTAL, fee=FEE, payment_method=method,
        payment_token=paying_with, idempotency_key=f"{order_id}:charge",
    )  # fmt: skip


def types(outgoing: list[Outgoing]) -> list[str]:
    return [type(message).__name__ for _, message in outgoing]


def later() -> datetime:
    """A moment past any row's next check."""
    return datetime.now(UTC) + timedelta(hours=1)


async def status_of(sessions: Sessions, key: str) -> PaymentStatus:
    async with sessions() as session:
        payment = await get_payment(session, key)
    assert payment is not None
    return payment.status


async def count(provider_engine: AsyncEngine, column: str) -> int:
    async with provider_engine.connect() as conn:
        charges = await conn.scalar(select(func.sum(payment_intents.c.create_calls)))
        refunds = await conn.scalar(select(func.count()).select_from(stripe_refunds))
    return int({"charge_calls": charges, "refunds": refunds}[column] or 0)


async def test_a_pending_charge_is_captured_by_the_settler_once_the_provider_confirms(
    sessions: Sessions, provider: StripeProvider, clock: Clock
) -> None:
    command = charge(method="alipay")
    assert types(await payments.charge(sessions, provider, BACKOFF, command)) == ["PaymentPending"]
    assert await settle_due(sessions, provider, BACKOFF, now=later()) == []
    clock.now += timedelta(seconds=3)
    settled = await settle_due(sessions, provider, BACKOFF, now=later())
    assert types(settled) == ["PaymentCaptured"]
    assert await status_of(sessions, command.idempotency_key) is PaymentStatus.CAPTURED


async def test_a_timed_out_charge_is_settled_by_status_without_charging_again(
    sessions: Sessions, provider: StripeProvider, provider_engine: AsyncEngine
) -> None:
    command = charge(paying_with="tok_timeout")
    assert await payments.charge(sessions, provider, BACKOFF, command) == []
    assert await status_of(sessions, command.idempotency_key) is PaymentStatus.UNKNOWN
    settled = await settle_due(sessions, provider, BACKOFF, now=later())
    assert types(settled) == ["PaymentCaptured"]
    assert await count(provider_engine, "charge_calls") == 1
    assert await settle_due(sessions, provider, BACKOFF, now=later()) == []


async def test_a_charge_left_new_before_the_provider_call_is_sent_again_under_its_key(
    sessions: Sessions, provider: StripeProvider, provider_engine: AsyncEngine
) -> None:
    command = charge()
    crashing = FailingProvider(provider, "charge", RuntimeError("process crashed"))
    with pytest.raises(RuntimeError):
        await payments.charge(sessions, crashing, BACKOFF, command)
    assert await settle_due(sessions, provider, BACKOFF) == [], "within its grace period"
    assert await count(provider_engine, "charge_calls") == 0
    settled = await settle_due(sessions, provider, BACKOFF, now=later())
    assert types(settled) == ["PaymentCaptured"]
    assert await count(provider_engine, "charge_calls") == 1


async def test_a_charge_left_new_after_the_provider_acted_is_settled_by_status(
    sessions: Sessions, provider: StripeProvider, provider_engine: AsyncEngine
) -> None:
    command = charge()
    crashing = FailingProvider(provider, "charge", RuntimeError("crashed"), after_acting=True)
    with pytest.raises(RuntimeError):
        await payments.charge(sessions, crashing, BACKOFF, command)
    assert await status_of(sessions, command.idempotency_key) is PaymentStatus.NEW
    settled = await settle_due(sessions, provider, BACKOFF, now=later())
    assert types(settled) == ["PaymentCaptured"]
    assert await count(provider_engine, "charge_calls") == 1


async def test_an_unanswered_charge_is_asked_about_ever_less_often_up_to_a_cap(
    sessions: Sessions, provider: StripeProvider
) -> None:
    command = charge(paying_with="tok_pending_forever")
    await payments.charge(sessions, provider, BACKOFF, command)
    waits = []
    for _ in range(5):
        assert await settle_due(sessions, provider, BACKOFF, now=later()) == []
        async with sessions() as session:
            row = (
                await session.execute(
                    select(payments_table.c.next_check_at, payments_table.c.attempts)
                )
            ).one()
        waits.append(round((db.as_utc(row.next_check_at) - datetime.now(UTC)).total_seconds()))
    assert waits == [2, 4, 8, 8, 8]
    assert row.attempts == 6
    assert await settle_due(sessions, provider, BACKOFF) == [], "not due yet"


async def test_a_cancel_lost_on_the_way_is_sent_again_by_the_settler(
    sessions: Sessions, provider: StripeProvider
) -> None:
    command = charge(paying_with="tok_pending_forever")
    await payments.charge(sessions, provider, BACKOFF, command)
    lost = FailingProvider(provider, "cancel", ProviderTimeout("no answer"))
    cancel = CancelPayment(
        order_id=command.order_id, iccid=ICCID, idempotency_key=command.idempotency_key,
        reason="expired",
    )  # fmt: skip
    assert await payments.cancel(sessions, lost, BACKOFF, cancel) == []
    assert await status_of(sessions, command.idempotency_key) is PaymentStatus.PENDING
    settled = await settle_due(sessions, provider, BACKOFF, now=later())
    assert types(settled) == ["PaymentCancelled"]
    assert await status_of(sessions, command.idempotency_key) is PaymentStatus.CANCELLED


async def test_a_timed_out_refund_is_settled_by_the_settler_without_a_second_refund(
    sessions: Sessions, provider: StripeProvider, provider_engine: AsyncEngine
) -> None:
    command = charge(paying_with="tok_refund_timeout")
    await payments.charge(sessions, provider, BACKOFF, command)
    refund = RefundPayment(
        order_id=command.order_id, iccid=ICCID, amount=TOTAL,
        idempotency_key=f"{command.order_id}:refund", reason="topup_failed",
    )  # fmt: skip
    assert await payments.refund(sessions, provider, BACKOFF, refund) == []
    assert await status_of(sessions, command.idempotency_key) is PaymentStatus.REFUND_PENDING
    assert await payments.refund(sessions, provider, BACKOFF, refund) == [], "still pending"
    settled = await settle_due(sessions, provider, BACKOFF, now=later())
    assert types(settled) == ["PaymentRefunded"]
    assert await status_of(sessions, command.idempotency_key) is PaymentStatus.REFUNDED
    assert await count(provider_engine, "refunds") == 1


async def test_a_refund_the_provider_never_received_is_sent_again_under_its_key(
    sessions: Sessions, provider: StripeProvider, provider_engine: AsyncEngine
) -> None:
    command = charge()
    await payments.charge(sessions, provider, BACKOFF, command)
    refund = RefundPayment(
        order_id=command.order_id, iccid=ICCID, amount=TOTAL,
        idempotency_key=f"{command.order_id}:refund", reason="topup_failed",
    )  # fmt: skip
    lost = FailingProvider(provider, "refund", ProviderTimeout("no answer"))
    assert await payments.refund(sessions, lost, BACKOFF, refund) == []
    assert await count(provider_engine, "refunds") == 0
    settled = await settle_due(sessions, provider, BACKOFF, now=later())
    assert types(settled) == ["PaymentRefunded"]
    assert await count(provider_engine, "refunds") == 1


async def test_one_failing_payment_does_not_hold_up_the_others(
    sessions: Sessions, provider: StripeProvider
) -> None:
    broken, fine = charge(paying_with="tok_timeout"), charge(paying_with="tok_timeout")
    for command in (broken, fine):
        await payments.charge(sessions, provider, BACKOFF, command)
    failing = FailingProvider(provider, "status", RuntimeError("bug"), key=broken.idempotency_key)
    settled = await settle_due(sessions, failing, BACKOFF, now=later())
    assert [message.order_id for _, message in settled] == [fine.order_id]
    assert await status_of(sessions, broken.idempotency_key) is PaymentStatus.UNKNOWN


async def test_settlers_running_at_once_settle_each_payment_once_even_on_sqlite(
    sessions: Sessions, provider: StripeProvider
) -> None:
    commands = [charge(paying_with="tok_timeout") for _ in range(5)]
    for command in commands:
        await payments.charge(sessions, provider, BACKOFF, command)
    moment = later()
    rounds = await asyncio.gather(
        *(settle_due(sessions, provider, BACKOFF, now=moment) for _ in range(3))
    )
    settled = [message.order_id for outgoing in rounds for _, message in outgoing]
    assert sorted(settled) == sorted(c.order_id for c in commands)


async def test_a_rate_limited_charge_waits_at_least_the_providers_retry_after(
    sessions: Sessions, provider: StripeProvider
) -> None:
    command = charge()
    limited = FailingProvider(
        provider, "charge", ProviderUnavailable("rate limited", retry_after_s=20.0)
    )
    assert await payments.charge(sessions, limited, BACKOFF, command) == []
    async with sessions() as session:
        row = (
            await session.execute(select(payments_table.c.status, payments_table.c.next_check_at))
        ).one()
    wait = (db.as_utc(row.next_check_at) - datetime.now(UTC)).total_seconds()
    assert row.status == "NEW", "nothing happened at the provider: not unknown"
    assert 19 < wait <= 20, "the Retry-After, not the 1 s backoff"
