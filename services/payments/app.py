"""Builds the payments service: its broker, database, provider and settler."""

from pathlib import Path

from fastapi import FastAPI

from services.payments import handlers
from services.payments.context import provide
from services.payments.provider_simulator import ProviderSimulator
from services.payments.settings import PaymentsSettings
from services.payments.settler import settler
from shared import topics
from shared.service import build_service_app
from shared.settings import ServiceSettings, specialise

SERVICE = "payments"


def settings() -> PaymentsSettings:
    return PaymentsSettings(service_name=SERVICE)


def build_app(service_settings: ServiceSettings | None = None) -> FastAPI:
    """The app for `service_settings`; plain service settings get payments' own from the
    environment (PROVIDER_*, SETTLE_*, NEW_GRACE_S)."""
    payments_settings = specialise(service_settings, PaymentsSettings)
    app = build_service_app(
        payments_settings,
        migrations=Path(__file__).parent / "migrations",
        kafka_router=handlers.router,
        topics=topics.ALL_TOPICS,
        background=[settler],
    )
    # Until a real provider's adapter exists, the simulator stands in for it; its
    # ledger lives in tables of its own in the same database.
    simulator = ProviderSimulator(
        app.state.engine,
        latency_ms=payments_settings.provider_latency_ms,
        decline_rate=payments_settings.provider_decline_rate,
        timeout_rate=payments_settings.provider_timeout_rate,
        confirm_after_s=payments_settings.provider_confirm_after_s,
        seed=payments_settings.provider_seed,
    )
    provide(app.state.broker, simulator, payments_settings.backoff)
    return app
