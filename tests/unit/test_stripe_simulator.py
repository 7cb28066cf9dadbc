"""The Stripe simulator speaks Stripe: its secret key, its idempotency rules, its error
shapes, its pages and its signed webhooks; and the outcomes of today's token table,
seen through the real adapter."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.payments.provider import ProviderTimeout, ProviderUnavailable
from services.payments.stripe_provider import StripeProvider
from services.stripe_simulator.app import build_app
from services.stripe_simulator.ledger import payment_intents, webhook_deliveries
from shared.events import Money
from tests.clock import Clock
from tests.unit.payments_fixtures import API_KEY, adapter_for, simulator_settings

TOTAL = Money(amount_minor=1545, currency="EUR")
FEE = Money(amount_minor=45, currency="EUR")
FORM = {
    "amount": "1545", "currency": "eur", "confirm": "true", "payment_method": "pm_card_visa",
    "payment_method_types[0]": "card", "metadata[idempotency_key]": "k",
}  # fmt: skip


@pytest.fixture
async def http(stripe_simulator: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=stripe_simulator),
        base_url="http://stripe",
        headers={"Authorization": f"Bearer {API_KEY}"},
    ) as client:
        yield client


def charge_key() -> str:
    return f"{uuid.uuid4()}:charge"


async def count(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


async def test_a_request_without_the_secret_key_is_refused_in_stripes_shape(
    http: httpx.AsyncClient,
) -> None:
    answer = await http.get("/v1/payment_intents", headers={"Authorization": "Bearer sk_x"})
    assert answer.status_code == 401
    assert answer.json()["error"]["type"] == "invalid_request_error"


async def test_the_same_key_and_parameters_replay_the_first_answer(
    http: httpx.AsyncClient, provider_engine: AsyncEngine
) -> None:
    key = charge_key()
    first = await http.post("/v1/payment_intents", data=FORM, headers={"Idempotency-Key": key})
    again = await http.post("/v1/payment_intents", data=FORM, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    async with provider_engine.connect() as conn:
        calls = await conn.scalar(select(payment_intents.c.create_calls))
    assert (await count(provider_engine, payment_intents), calls) == (1, 2)


async def test_the_same_key_with_other_parameters_is_an_idempotency_error(
    http: httpx.AsyncClient,
) -> None:
    key = charge_key()
    await http.post("/v1/payment_intents", data=FORM, headers={"Idempotency-Key": key})
    other = await http.post(
        "/v1/payment_intents", data=FORM | {"amount": "999"}, headers={"Idempotency-Key": key}
    )
    assert other.status_code == 400
    assert other.json()["error"]["type"] == "idempotency_error"


async def test_a_key_still_in_flight_is_a_conflict_the_adapter_calls_unknown(
    stripe_simulator: FastAPI, http: httpx.AsyncClient, provider: StripeProvider
) -> None:
    key = charge_key()
    stripe_simulator.state.simulator.in_flight.add(key)
    answer = await http.post("/v1/payment_intents", data=FORM, headers={"Idempotency-Key": key})
    assert answer.status_code == 409
    with pytest.raises(ProviderTimeout):
        await provider.charge(key, TOTAL, FEE, "card", "tok_visa")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("tok_decline_insufficient", "insufficient_funds"),
        ("tok_expired_card", "expired_card"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
        ("pm_card_chargeDeclined", "generic_decline"),
        ("4242424242424242", "card_number_not_accepted"),
    ],
)
async def test_declining_tokens_are_402_card_errors_with_their_decline_code(
    provider: StripeProvider, provider_engine: AsyncEngine, token: str, reason: str
) -> None:
    result = await provider.charge(charge_key(), TOTAL, FEE, "card", token)
    assert (result.status, result.reason) == ("declined", reason)
    assert result.message
    async with provider_engine.connect() as conn:
        stored = await conn.scalar(select(payment_intents.c.payment_method))
    assert "42424242" not in str(stored), "a card number is kept masked"


@pytest.mark.parametrize("method", ["alipay", "wechat_pay", "paypal"])
async def test_an_asynchronous_method_is_pending_with_a_next_action_then_confirmed(
    provider: StripeProvider, clock: Clock, method: Any
) -> None:
    key = charge_key()
    pending = await provider.charge(key, TOTAL, FEE, method, "tok_wallet")
    assert pending.status == "pending"
    assert pending.next_action is not None
    clock.advance(3)
    confirmed = await provider.status(key, pending.provider_reference)
    assert (confirmed.status, confirmed.provider_reference) == (
        "captured",
        pending.provider_reference,
    )


async def test_a_pending_forever_charge_is_cancelled_and_a_captured_one_stays_captured(
    provider: StripeProvider,
) -> None:
    waiting, paid = charge_key(), charge_key()
    await provider.charge(waiting, TOTAL, FEE, "card", "tok_pending_forever")
    await provider.charge(paid, TOTAL, FEE, "card", "tok_visa")
    assert (await provider.cancel(waiting, None)).status == "cancelled"
    assert (await provider.cancel(paid, None)).status == "captured"
    assert (await provider.cancel(charge_key(), None)).status == "not_found"


async def test_a_lost_answer_acted_first_and_the_same_request_returns_the_first_result(
    provider: StripeProvider, provider_engine: AsyncEngine
) -> None:
    key = charge_key()
    with pytest.raises(ProviderTimeout):
        await provider.charge(key, TOTAL, FEE, "card", "tok_timeout_1")
    again = await provider.charge(key, TOTAL, FEE, "card", "tok_timeout_1")
    assert again.status == "captured"
    assert await count(provider_engine, payment_intents) == 1


async def test_random_declines_and_lost_answers_follow_their_rates(tmp_path: Path) -> None:
    app = build_app(
        simulator_settings(tmp_path, provider_decline_rate=1.0, provider_timeout_rate=0.0)
    )
    adapter = adapter_for(app)
    await app.state.simulator.ready()
    declined = await adapter.charge(charge_key(), TOTAL, FEE, "card", "tok_visa")
    assert (declined.status, declined.reason) == ("declined", "generic_decline")
    lossy = build_app(simulator_settings(tmp_path, provider_timeout_rate=1.0))
    with pytest.raises(ProviderTimeout):
        await adapter_for(lossy).charge(charge_key(), TOTAL, FEE, "card", "tok_visa")
    await adapter.close()


async def test_beyond_its_rate_the_simulator_answers_429_and_the_adapter_waits_it_out(
    tmp_path: Path,
) -> None:
    app = build_app(simulator_settings(tmp_path, provider_rate_limit_per_s=1.0))
    await app.state.simulator.ready()
    adapter = adapter_for(app)
    await adapter.charge(charge_key(), TOTAL, FEE, "card", "tok_visa")
    with pytest.raises(ProviderUnavailable) as limited:
        await adapter.charge(charge_key(), TOTAL, FEE, "card", "tok_visa")
    assert limited.value.retry_after_s is not None
    assert limited.value.retry_after_s >= 1
    with pytest.raises(ProviderUnavailable):  # not even sent: the Retry-After holds
        await adapter.status(charge_key(), None)
    await adapter.close()


async def test_lists_page_newest_first_with_starting_after(
    provider: StripeProvider, http: httpx.AsyncClient, clock: Clock
) -> None:
    for _ in range(3):
        await provider.charge(charge_key(), TOTAL, FEE, "card", "tok_visa")
        clock.advance(1)
    first = (await http.get("/v1/payment_intents", params={"limit": 2})).json()
    assert (first["object"], len(first["data"]), first["has_more"]) == ("list", 2, True)
    after = first["data"][-1]["id"]
    rest = (
        await http.get("/v1/payment_intents", params={"limit": 2, "starting_after": after})
    ).json()
    assert (len(rest["data"]), rest["has_more"]) == (1, False)


async def test_events_are_signed_as_stripe_signs_and_delivered_until_taken_even_after_a_restart(
    tmp_path: Path, clock: Clock
) -> None:
    settings = simulator_settings(tmp_path, stripe_webhook_url="http://payments/webhooks/stripe")
    app = build_app(settings, clock=clock)
    await app.state.simulator.ready()
    await adapter_for(app).charge(charge_key(), TOTAL, FEE, "card", "tok_visa")
    taken: list[dict[str, Any]] = []

    def endpoint(up: bool) -> httpx.AsyncClient:
        def answer(request: httpx.Request) -> httpx.Response:
            if not up:
                return httpx.Response(503)
            body = request.content.decode()
            stripe.WebhookSignature.verify_header(
                body, request.headers["Stripe-Signature"], "whsec_unit", tolerance=300
            )
            taken.append(json.loads(body))
            return httpx.Response(200)

        return httpx.AsyncClient(transport=httpx.MockTransport(answer))

    async with endpoint(up=False) as down:
        assert await app.state.simulator.deliver_due(down) == 0
    await app.state.simulator.engine.dispose()
    restarted = build_app(settings, clock=clock)
    clock.advance(1)  # past the first retry's backoff
    async with endpoint(up=True) as up:
        assert await restarted.state.simulator.deliver_due(up) == 1
    assert [event["type"] for event in taken] == ["payment_intent.succeeded"]
    async with restarted.state.simulator.engine.connect() as conn:
        attempts = await conn.scalar(select(webhook_deliveries.c.attempts))
    assert attempts == 2
    await restarted.state.simulator.engine.dispose()
