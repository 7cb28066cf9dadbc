"""The Stripe adapter's requests are real Stripe requests: each call runs against
stripe-mock, Stripe's official API mock (`make stripe-mock` builds it), which checks
every request against Stripe's OpenAPI document and answers with Stripe's fixtures. A
request it refuses raises here (the adapter lets an invalid request's error through)."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from services.payments.provider import ProviderResult
from services.payments.stripe_provider import StripeProvider
from shared.events import Money, PaymentMethod
from shared.settings import REPO_ROOT

STRIPE_MOCK = REPO_ROOT / "var" / "tools" / "bin" / "stripe-mock"
TOTAL = Money(amount_minor=1545, currency="EUR")
FEE = Money(amount_minor=45, currency="EUR")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def stripe_mock() -> Iterator[str]:
    if not STRIPE_MOCK.exists():
        pytest.fail("stripe-mock is not built: run `make stripe-mock`")
    http, https = _free_port(), _free_port()
    process = subprocess.Popen(
        [str(STRIPE_MOCK), "-http-addr", f"127.0.0.1:{http}", "-https-addr", f"127.0.0.1:{https}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", http), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail("stripe-mock did not start")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{http}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
async def adapter(stripe_mock: str) -> AsyncIterator[StripeProvider]:
    provider = StripeProvider("sk_test_123", api_base=stripe_mock, timeout_s=10)
    yield provider
    await provider.close()


def key(step: str = "charge") -> str:
    return f"{uuid.uuid4()}:{step}"


@pytest.mark.parametrize("method", ["card", "alipay", "wechat_pay", "paypal"])
async def test_a_charge_with_each_method_is_a_valid_payment_intent_request(
    adapter: StripeProvider, method: PaymentMethod
) -> None:
    result = await adapter.charge(key(), TOTAL, FEE, method, "pm_card_visa")
    assert isinstance(result, ProviderResult)
    assert result.provider_reference is not None
    assert result.provider_reference.startswith("pi_")


async def test_a_charge_sent_again_under_its_key_is_a_valid_request_with_the_same_answer(
    adapter: StripeProvider,
) -> None:
    charge_key = key()
    first = await adapter.charge(charge_key, TOTAL, FEE, "card", "pm_card_visa")
    again = await adapter.charge(charge_key, TOTAL, FEE, "card", "pm_card_visa")
    # stripe-mock keeps no state (new ids each time): the replay of the first answer is
    # the simulator's to show (tests/unit/test_stripe_simulator.py); here, its validity.
    assert again.status == first.status


async def test_status_by_reference_and_by_key_are_valid_retrieve_and_search_requests(
    adapter: StripeProvider,
) -> None:
    by_reference = await adapter.status(key(), "pi_123")
    by_key = await adapter.status(key(), None)
    assert by_reference.provider_reference is not None
    assert by_key.status in {"captured", "pending", "declined", "cancelled", "not_found"}


async def test_cancel_is_a_valid_request(adapter: StripeProvider) -> None:
    cancelled = await adapter.cancel_intent("pi_123", key())
    assert cancelled["object"] == "payment_intent"
    result = await adapter.cancel(key(), "pi_123")
    assert isinstance(result, ProviderResult)


async def test_a_refund_and_its_status_are_valid_refund_requests(adapter: StripeProvider) -> None:
    refund_key = key("refund")
    refunded = await adapter.refund(refund_key, "pi_123", TOTAL)
    assert refunded.provider_reference is not None
    assert refunded.provider_reference.startswith("re_")
    again = await adapter.refund(refund_key, "pi_123", TOTAL)
    assert again.status == refunded.status
    looked_up = await adapter.refund_status(refund_key, "pi_123")
    assert looked_up.status in {"refunded", "pending", "declined", "not_found"}
