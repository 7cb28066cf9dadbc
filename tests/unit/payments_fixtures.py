"""Fixtures shared by the payments unit tests: the real Stripe adapter talking to the
Stripe simulator's app in process (an httpx ASGI transport under the SDK's HTTPX
client), the simulator's ledger in its own SQLite file, driven by a settable clock.

tests/unit/conftest.py makes them available to every unit test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from services.payments.stripe_provider import StripeProvider
from services.stripe_simulator.app import build_app
from services.stripe_simulator.settings import SimulatorSettings
from tests.clock import Clock

API_KEY = "sk_test_unit"
STRIPE_TIMEOUT_S = 0.5  # the simulator holds a lost answer longer (PROVIDER_HANG_S)


def simulator_settings(tmp_path: Path, **overrides: object) -> SimulatorSettings:
    values: dict[str, object] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'stripe.db'}",
        "stripe_api_key": API_KEY,
        "stripe_webhook_secret": "whsec_unit",
        "provider_latency_ms": 0,
        "provider_confirm_after_s": 2.0,
        "provider_hang_s": 5.0,
        **overrides,
    }
    return SimulatorSettings(**values)  # type: ignore[arg-type]


def adapter_for(app: FastAPI) -> StripeProvider:
    return StripeProvider(
        API_KEY,
        api_base="http://stripe-simulator",
        timeout_s=STRIPE_TIMEOUT_S,
        transport=httpx.ASGITransport(app=app),
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def stripe_simulator(tmp_path: Path, clock: Clock) -> AsyncIterator[FastAPI]:
    app = build_app(simulator_settings(tmp_path), clock=clock)
    await app.state.simulator.ready()
    yield app
    await app.state.simulator.engine.dispose()


@pytest.fixture
def provider_engine(stripe_simulator: FastAPI) -> AsyncEngine:
    """The simulator's ledger (services/stripe_simulator/ledger.py), to count in it."""
    engine: AsyncEngine = stripe_simulator.state.simulator.engine
    return engine


@pytest.fixture
async def provider(stripe_simulator: FastAPI) -> AsyncIterator[StripeProvider]:
    adapter = adapter_for(stripe_simulator)
    yield adapter
    await adapter.close()
