"""The carrier simulator as the integration tests run it: served by uvicorn on a free
local port, its ledger in a PostgreSQL database of its own; provisioning reaches it over
HTTP through its real adapter (CARRIER_API_BASE)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from sqlalchemy import func, select

from services.carrier_simulator import app as carrier_simulator
from services.carrier_simulator import ledger
from services.carrier_simulator.app import Behaviour
from services.carrier_simulator.settings import CarrierSimulatorSettings
from shared.events import TopUpLine
from tests.infra import PostgresUnderTest
from tests.unit.carrier_fixtures import served


@dataclass
class Carrier:
    app: FastAPI
    base_url: str

    @property
    def behaviour(self) -> Behaviour:
        behaviour = self.app.state.behaviour
        assert isinstance(behaviour, Behaviour)
        return behaviour

    async def orders(self, command: TopUpLine) -> int:
        """How many top-up orders its ledger holds for the command's key."""
        orders = ledger.topup_orders
        async with self.app.state.sessions() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(orders)
                .where(orders.c.description == command.idempotency_key)
            )
        return int(count or 0)


@asynccontextmanager
async def carrier_served(postgres: PostgresUnderTest, **settings: Any) -> AsyncIterator[Carrier]:
    """`settings`: the simulator's (carrier_suspended_iccids=..., kafka_* to report usage)."""
    config = CarrierSimulatorSettings(
        database_url=await postgres.create_database("carrier"),
        **{"carrier_latency_ms": 20, "carrier_hang_s": 1.5, **settings},
    )
    app = carrier_simulator.build_app(config)
    async with served(app) as base_url:
        yield Carrier(app, base_url)
