"""Builds the payments service: its broker, database, Stripe adapter, webhook and settler."""

from pathlib import Path

import httpx
from fastapi import FastAPI

from services.payments import handlers, webhooks
from services.payments.context import provide
from services.payments.settings import PaymentsSettings
from services.payments.settler import settler
from services.payments.stripe_provider import StripeProvider
from shared import topics
from shared.late_answers import LateAnswers
from shared.service import build_service_app
from shared.settings import ServiceSettings, specialise

SERVICE = "payments"


def settings() -> PaymentsSettings:
    return PaymentsSettings(service_name=SERVICE)


def build_app(
    service_settings: ServiceSettings | None = None,
    *,
    stripe_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The app for `service_settings`; plain service settings get payments' own from the
    environment (PAYMENT_PROVIDER, STRIPE_*, SETTLE_*, NEW_GRACE_S, OUTSIDE_*). `stripe_transport`:
    tests give the Stripe simulator's app, in process."""
    payments_settings = specialise(service_settings, PaymentsSettings)
    late = LateAnswers.of(payments_settings, SERVICE)
    provider = StripeProvider(
        payments_settings.stripe_api_key.get_secret_value(),
        api_base=payments_settings.stripe_api_base,
        timeout_s=payments_settings.stripe_timeout_s,
        return_url=payments_settings.stripe_return_url,
        transport=stripe_transport,
    )
    app = build_service_app(
        payments_settings,
        migrations=Path(__file__).parent / "migrations",
        kafka_router=handlers.router,
        topics=topics.ALL_TOPICS,
        http_router=webhooks.router,
        # At shutdown the calls still out finish first, then Stripe's client closes.
        background=[settler, late.closing(payments_settings.stripe_timeout_s, provider.close)],
        public_paths=webhooks.PUBLIC_PATHS,
    )
    provide(app.state.broker, provider, payments_settings.backoff, late)
    return app
