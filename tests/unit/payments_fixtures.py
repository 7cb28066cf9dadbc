"""Fixtures shared by the payments unit tests: a ProviderSimulator over its own
SQLite ledger, driven by a settable clock.

tests/unit/conftest.py makes them available to every unit test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.payments.provider_simulator import ProviderSimulator, provider_metadata
from shared import db
from tests.clock import Clock


@pytest.fixture
async def provider_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    # The provider's ledger in a database of its own: it is the outside world.
    engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'provider.db'}")
    await db.create_schema(engine, provider_metadata)
    yield engine
    await engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def provider(provider_engine: AsyncEngine, clock: Clock) -> ProviderSimulator:
    return ProviderSimulator(provider_engine, clock=clock)
