"""Payments' settings come from the environment, and the app accepts plain service settings."""

import pytest

from services.payments.app import build_app, settings
from services.payments.context import provider_in
from services.payments.settings import PaymentsSettings
from services.payments.stripe_provider import StripeProvider
from shared.settings import ServiceSettings


def test_defaults_suit_make_run_against_the_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("STRIPE_API_KEY", "STRIPE_TIMEOUT_S", "SETTLE_INTERVAL_S", "PAYMENT_PROVIDER"):
        monkeypatch.delenv(var, raising=False)
    defaults = settings()
    assert defaults.service_name == "payments"
    assert defaults.payment_provider == "stripe"
    assert defaults.stripe_api_base == "https://api.stripe.com"
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
