"""What the Stripe adapter makes of answers no honest Stripe gives, and what the webhook
endpoint makes of signed events of the wrong shape: never a decline taken for granted,
never a 500, never a crash of the settler."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest

from services.payments.app import build_app
from services.payments.provider import ProviderTimeout
from services.payments.stripe_provider import StripeProvider, _retry_after, charge_result
from services.stripe_simulator.app import signature_header
from shared.bounded_answers import MAX_ANSWER_BYTES
from shared.events import Money
from shared.settings import ServiceSettings
from tests.unit.outsized_answers import CHUNK, endless, gzip_bomb

SECRET = "whsec_unit_shapes"


@pytest.mark.parametrize(
    "intent",
    [
        {"id": "pi_1", "status": 7},
        {"id": "pi_1", "status": ["succeeded"]},
        {"id": "pi_1"},
        {"id": "pi_1", "status": "requires_confirmation"},
        {"id": "pi_" + "x" * 10_000, "status": "succeeded"},
        {"id": 12, "status": "succeeded"},
        {"status": "succeeded"},
    ],
)
def test_an_intent_we_cannot_read_is_an_unknown_outcome_never_a_decline(
    intent: dict[str, Any],
) -> None:
    with pytest.raises(ProviderTimeout):
        charge_result(intent)


def test_a_failed_intent_with_an_odd_error_is_still_a_bounded_decline() -> None:
    declined = charge_result(
        {"id": "pi_1", "status": "requires_payment_method", "last_payment_error": "nope"}
    )
    assert (declined.status, declined.reason) == ("declined", "payment_method_required")
    odd_action = charge_result({"id": "pi_1", "status": "requires_action", "next_action": "x"})
    assert (odd_action.status, odd_action.next_action) == ("pending", None)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("nan", 1.0), ("inf", 60.0), ("-inf", 0.0), ("1e12", 60.0), ("-5", 0.0), ("x", 1.0)],
)
def test_retry_after_is_always_a_bounded_number(header: str, seconds: float) -> None:
    assert _retry_after({"retry-after": header}) == seconds


async def post(payload: str, signature: str) -> httpx.Response:
    app = build_app(ServiceSettings(service_name="payments", database_url="sqlite+aiosqlite://"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://payments"
    ) as client:
        return await client.post(
            "/webhooks/stripe", content=payload, headers={"Stripe-Signature": signature}
        )


def provider_answering(answer: httpx.Response) -> StripeProvider:
    def serve(request: httpx.Request) -> httpx.Response:
        assert request.headers["accept-encoding"] == "identity"
        return answer

    return StripeProvider(
        "sk_test_unit", api_base="http://stripe.test", transport=httpx.MockTransport(serve)
    )


@pytest.mark.parametrize("outsized", ["endless", "gzip bomb"])
async def test_an_outsized_answer_is_an_unknown_outcome_never_read_whole(outsized: str) -> None:
    sent: list[int] = []
    answer = (
        httpx.Response(200, content=endless(sent))
        if outsized == "endless"
        else httpx.Response(200, headers={"Content-Encoding": "gzip, gzip"}, content=gzip_bomb())
    )
    provider = provider_answering(answer)
    eur = Money(amount_minor=1000, currency="EUR")
    with pytest.raises(ProviderTimeout):
        await provider.charge(f"{uuid.uuid4()}:charge", eur, eur, "card", "tok_visa")
    await provider.close()
    assert len(sent) * CHUNK <= MAX_ANSWER_BYTES + 2 * CHUNK


def event(**overrides: Any) -> str:
    body = {"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {}}}
    return json.dumps(body | overrides)


@pytest.mark.parametrize(
    "payload",
    [
        "[]",
        '"an event"',
        "null",
        "[" * 20_000 + "]" * 20_000,
        event(data=[]),
        event(data={"object": []}),
        event(data={"object": "pi_1"}),
        event(id={"evt": 1}),
        event(id=None),
        event(type=None),
    ],
)
async def test_a_signed_event_of_the_wrong_shape_is_a_400_that_quotes_nothing(
    payload: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", SECRET)
    answer = await post(payload, signature_header(payload, SECRET))
    assert answer.status_code == 400, answer.text
    assert len(answer.text) < 300


async def test_a_signature_from_the_future_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", SECRET)
    payload = event()
    ten_years = int(time.time()) + 10 * 365 * 86_400
    answer = await post(payload, signature_header(payload, SECRET, ten_years))
    assert answer.status_code == 400
    assert "in the future" in answer.json()["detail"]
