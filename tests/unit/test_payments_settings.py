"""Payments' settings come from the environment, and the app accepts plain service settings."""

import pytest

from services.payments.app import build_app, settings
from services.payments.context import provider_in
from services.payments.provider_simulator import ProviderSimulator
from services.payments.settings import PaymentsSettings
from shared.settings import ServiceSettings


def test_defaults_suit_make_run(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PROVIDER_LATENCY_MS", "PROVIDER_CONFIRM_AFTER_S", "SETTLE_INTERVAL_S"):
        monkeypatch.delenv(var, raising=False)
    defaults = settings()
    assert defaults.service_name == "payments"
    assert defaults.provider_latency_ms == 100
    assert defaults.provider_decline_rate == defaults.provider_timeout_rate == 0.0
    assert defaults.provider_confirm_after_s == 2.0
    assert defaults.settle_interval_s == 0.5
    assert (defaults.backoff.base_s, defaults.backoff.max_s) == (0.5, 30.0)


def test_environment_variables_set_the_provider_and_the_settler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROVIDER_DECLINE_RATE", "0.1")
    monkeypatch.setenv("PROVIDER_CONFIRM_AFTER_S", "5")
    monkeypatch.setenv("SETTLE_BACKOFF_MAX_S", "60")
    monkeypatch.setenv("NEW_GRACE_S", "20")
    configured = PaymentsSettings()
    assert configured.provider_decline_rate == 0.1
    assert configured.provider_confirm_after_s == 5.0
    assert configured.backoff.max_s == 60.0
    assert configured.backoff.new_grace_s == 20.0


def test_the_app_is_built_from_plain_service_settings_with_the_provider_in_its_context() -> None:
    app = build_app(ServiceSettings(service_name="payments", database_url="sqlite+aiosqlite://"))
    assert isinstance(app.state.settings, PaymentsSettings)
    assert isinstance(provider_in(app.state.broker), ProviderSimulator)
