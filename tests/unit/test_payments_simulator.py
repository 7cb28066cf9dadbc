"""The provider simulator behaves like the outside world: idempotent, slow, sometimes
declining, sometimes pending, sometimes silent after it acted."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.payments.provider import ProviderTimeout
from services.payments.provider_simulator import (
    ProviderSimulator,
    simulated_charges,
    simulated_refunds,
)
from shared import db
from shared.events import Money, PaymentMethod
from tests.clock import Clock

EUR_15 = Money(amount_minor=1500, currency="EUR")
FEE = Money(amount_minor=45, currency="EUR")


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'provider.db'}")
    yield engine
    await engine.dispose()


@pytest.fixture
def provider(engine: AsyncEngine, clock: Clock) -> ProviderSimulator:
    return ProviderSimulator(engine, confirm_after_s=2.0, clock=clock)


def new_key() -> str:
    return f"{uuid.uuid4()}:charge"


async def charge(
    provider: ProviderSimulator,
    key: str,
    paying_with: str = "tok_visa",
    method: PaymentMethod = "card",
) -> str:
    return (await provider.charge(key, EUR_15, FEE, method, paying_with)).status


async def charge_calls(engine: AsyncEngine, key: str) -> int | None:
    async with engine.connect() as conn:
        return await conn.scalar(
            select(simulated_charges.c.charge_calls).where(
                simulated_charges.c.idempotency_key == key
            )
        )


async def test_a_card_charge_is_captured_with_a_provider_reference(
    provider: ProviderSimulator,
) -> None:
    result = await provider.charge(new_key(), EUR_15, FEE, "card", "tok_visa")
    assert result.status == "captured"
    assert result.provider_reference is not None
    assert result.provider_reference.startswith("sim_ch_")


async def test_the_same_key_returns_the_first_result_and_never_charges_twice(
    provider: ProviderSimulator, engine: AsyncEngine
) -> None:
    key = new_key()
    first = await provider.charge(key, EUR_15, FEE, "card", "tok_visa")
    again = await provider.charge(key, Money(amount_minor=1, currency="EUR"), FEE, "card", "x")
    assert again == first
    assert await charge_calls(engine, key) == 2
    async with engine.connect() as conn:
        stored = (await conn.execute(select(simulated_charges))).one()
    assert (stored.amount_minor, stored.status) == (1500, "captured")


@pytest.mark.parametrize(
    ("token", "reason"),
    [("tok_decline_1", "insufficient_funds"), ("tok_expired", "card_expired")],
)
async def test_decline_tokens_are_declined_with_their_reason(
    provider: ProviderSimulator, token: str, reason: str
) -> None:
    result = await provider.charge(new_key(), EUR_15, FEE, "card", token)
    assert (result.status, result.reason) == ("declined", reason)
    assert result.message


@pytest.mark.parametrize(
    "card_number", ["4242424242424242", "4242 4242 4242 4242", "4222222222222"]
)
async def test_a_card_number_is_declined_and_only_its_last_four_digits_are_kept(
    provider: ProviderSimulator, engine: AsyncEngine, card_number: str
) -> None:
    result = await provider.charge(new_key(), EUR_15, FEE, "card", card_number)
    assert (result.status, result.reason) == ("declined", "card_number_not_accepted")
    async with engine.connect() as conn:
        kept = await conn.scalar(select(simulated_charges.c.token_on_file))
    assert kept is not None
    assert kept.endswith(card_number[-4:])
    assert set(kept[:-4]) == {"*"}


@pytest.mark.parametrize("method", ["alipay", "wechat_pay"])
async def test_asynchronous_methods_are_pending_then_captured_when_asked_later(
    provider: ProviderSimulator, clock: Clock, method: PaymentMethod
) -> None:
    key = new_key()
    assert await charge(provider, key, method=method) == "pending"
    clock.advance(1.9)
    assert (await provider.status(key)).status == "pending"
    clock.advance(0.2)
    assert (await provider.status(key)).status == "captured"


async def test_a_pending_forever_payment_stays_pending_until_cancelled(
    provider: ProviderSimulator, clock: Clock
) -> None:
    key = new_key()
    assert await charge(provider, key, paying_with="tok_pending_forever") == "pending"
    clock.advance(3600)
    assert (await provider.status(key)).status == "pending"
    assert (await provider.cancel(key)).status == "cancelled"
    assert (await provider.status(key)).status == "cancelled"


async def test_a_captured_charge_stays_captured_when_cancelled(
    provider: ProviderSimulator, clock: Clock
) -> None:
    key = new_key()
    await charge(provider, key, method="alipay")
    clock.advance(5)
    assert (await provider.cancel(key)).status == "captured"


async def test_a_timed_out_charge_went_through_and_only_the_first_call_times_out(
    provider: ProviderSimulator, engine: AsyncEngine
) -> None:
    key = new_key()
    with pytest.raises(ProviderTimeout):
        await charge(provider, key, paying_with="tok_timeout")
    assert (await provider.status(key)).status == "captured"
    assert await charge(provider, key, paying_with="tok_timeout") == "captured"
    assert await charge_calls(engine, key) == 2


async def test_an_unknown_key_is_not_found(provider: ProviderSimulator) -> None:
    assert (await provider.status(new_key())).status == "not_found"
    assert (await provider.cancel(new_key())).status == "not_found"


async def test_the_ledger_survives_a_restart(engine: AsyncEngine, clock: Clock) -> None:
    key = new_key()
    before = await ProviderSimulator(engine, clock=clock).charge(key, EUR_15, FEE, "card", "tok")
    restarted = ProviderSimulator(engine, clock=clock)
    assert await restarted.status(key) == before
    assert await restarted.charge(key, EUR_15, FEE, "card", "tok") == before


async def test_a_charge_is_refunded_once_whatever_the_refund_key(
    provider: ProviderSimulator, engine: AsyncEngine
) -> None:
    key = new_key()
    await charge(provider, key)
    refund_key = key.replace(":charge", ":refund")
    first = await provider.refund(refund_key, key, EUR_15)
    assert first.status == "refunded"
    assert await provider.refund(refund_key, key, EUR_15) == first
    assert await provider.status(refund_key) == first
    assert (await provider.status(key)).status == "refunded"
    other = await provider.refund(f"{uuid.uuid4()}:refund", key, EUR_15)
    assert (other.status, other.reason) == ("declined", "already_refunded")
    async with engine.connect() as conn:
        refunded = await conn.scalar(
            select(func.count())
            .select_from(simulated_refunds)
            .where(simulated_refunds.c.status == "refunded")
        )
    assert refunded == 1


async def test_a_refund_of_more_than_was_charged_or_of_nothing_is_declined(
    provider: ProviderSimulator,
) -> None:
    key = new_key()
    await charge(provider, key)
    too_much = await provider.refund(f"{uuid.uuid4()}:refund", key, EUR_15 + FEE)
    nothing = await provider.refund(f"{uuid.uuid4()}:refund", new_key(), EUR_15)
    assert (too_much.status, too_much.reason) == ("declined", "amount_exceeds_charge")
    assert (nothing.status, nothing.reason) == ("declined", "charge_not_found")


async def test_a_first_refund_call_can_time_out_after_refunding(
    provider: ProviderSimulator,
) -> None:
    key = new_key()
    await charge(provider, key, paying_with="tok_refund_timeout")
    refund_key = f"{uuid.uuid4()}:refund"
    with pytest.raises(ProviderTimeout):
        await provider.refund(refund_key, key, EUR_15)
    assert (await provider.status(refund_key)).status == "refunded"


async def test_random_declines_follow_their_rate(engine: AsyncEngine) -> None:
    always = ProviderSimulator(engine, decline_rate=1.0)
    result = await always.charge(new_key(), EUR_15, FEE, "card", "tok_visa")
    assert (result.status, result.reason) == ("declined", "provider_declined")


async def test_random_timeouts_lose_the_answer_but_not_the_charge(engine: AsyncEngine) -> None:
    key = new_key()
    with pytest.raises(ProviderTimeout):
        await ProviderSimulator(engine, timeout_rate=1.0).charge(key, EUR_15, FEE, "card", "tok")
    assert (await ProviderSimulator(engine).status(key)).status == "captured"


async def test_every_call_takes_a_jittered_latency(engine: AsyncEngine) -> None:
    slow = ProviderSimulator(engine, latency_ms=40, seed=7)
    started = time.monotonic()
    await slow.status(new_key())
    assert 0.019 <= time.monotonic() - started < 1.0
