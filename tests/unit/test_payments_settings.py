"""Payments' settings come from the environment, and the app accepts plain service settings."""

import httpx
import pytest

from services.payments.app import build_app, settings
from services.payments.context import provider_in
from services.payments.settings import PaymentsSettings
from services.payments.stripe_provider import StripeProvider
from services.stripe_simulator.app import signature_header
from shared.settings import ServiceSettings


def test_defaults_are_stripe_with_no_secret_of_anyones(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "STRIPE_API_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "STRIPE_TIMEOUT_S",
        "SETTLE_INTERVAL_S",
        "PAYMENT_PROVIDER",
    ):
        monkeypatch.delenv(var, raising=False)
    defaults = settings()
    assert defaults.service_name == "payments"
    assert defaults.payment_provider == "stripe"
    assert defaults.stripe_api_base == "https://api.stripe.com"
    # A known default secret would let anyone sign a webhook: there is none.
    assert defaults.stripe_webhook_secret.get_secret_value() == ""
    assert defaults.stripe_api_key.get_secret_value() == ""
    assert defaults.stripe_timeout_s == 10.0
    assert defaults.settle_interval_s == 0.5
    assert (defaults.backoff.base_s, defaults.backoff.max_s) == (0.5, 30.0)


def test_environment_variables_set_the_provider_and_the_settler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_from_env")
    monkeypatch.setenv("STRIPE_API_BASE", "http://127.0.0.1:8010")
    monkeypatch.setenv("STRIPE_TIMEOUT_S", "2.5")
    monkeypatch.setenv("SETTLE_BACKOFF_MAX_S", "60")
    monkeypatch.setenv("NEW_GRACE_S", "20")
    configured = PaymentsSettings()
    assert configured.stripe_api_key.get_secret_value() == "sk_test_from_env"
    assert "sk_test_from_env" not in repr(configured), "a secret is never shown"
    assert configured.stripe_api_base == "http://127.0.0.1:8010"
    assert configured.stripe_timeout_s == 2.5
    assert configured.backoff.max_s == 60.0
    assert configured.backoff.new_grace_s == 20.0


def test_an_unknown_payment_provider_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMENT_PROVIDER", "simulator")
    with pytest.raises(ValueError, match="stripe"):
        PaymentsSettings()


def test_the_app_is_built_from_plain_service_settings_with_the_stripe_adapter() -> None:
    app = build_app(ServiceSettings(service_name="payments", database_url="sqlite+aiosqlite://"))
    assert isinstance(app.state.settings, PaymentsSettings)
    assert isinstance(provider_in(app.state.broker), StripeProvider)


async def test_without_a_webhook_secret_every_webhook_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    app = build_app(ServiceSettings(service_name="payments", database_url="sqlite+aiosqlite://"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://payments"
    ) as client:
        # Signed with the empty secret: exactly what a known default would let anyone do.
        payload = '{"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {}}}'
        answer = await client.post(
            "/webhooks/stripe",
            content=payload,
            headers={"Stripe-Signature": signature_header(payload, "")},
        )
    assert answer.status_code == 503
    assert "STRIPE_WEBHOOK_SECRET is not set" in answer.json()["detail"]
