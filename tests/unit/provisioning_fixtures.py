"""Provisioning at handler level, as its usage, alert and renewal tests drive it: its
router in a fresh in-memory broker, its tables in a temporary SQLite file, the carrier
simulator through the real adapter (carrier_fixtures.py), a clock the test moves, its
read API over the same database, and what it publishes to the line-events and orders
topics collected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from services.provisioning import api, db, handlers
from services.provisioning.provisioning import PROVISIONER, Provisioner
from shared import topics
from shared.http_guard import secure
from tests.clock import Clock
from tests.credentials import RENEWER
from tests.unit.carrier_fixtures import SimulatedCarrier, simulated_carrier
from tests.unit.harness import InMemoryService, in_memory_service, running


@dataclass
class ProvisioningUnderTest:
    service: InMemoryService
    provisioner: Provisioner
    clock: Clock
    http: httpx.AsyncClient
    line_events: list[dict[str, Any]]  # what it publishes to provisioning.line-events.v1
    orders_commands: list[dict[str, Any]]  # and to orders.commands.v1 (renewal orders)
    carrier: SimulatedCarrier


@asynccontextmanager
async def provisioning_under_test(
    tmp_path: Path, start: datetime, **rules: Any
) -> AsyncIterator[ProvisioningUnderTest]:
    """`rules`: the Provisioner's other fields (alerts, renewal, ...)."""
    async with (
        in_memory_service("provisioning", handlers.router, db.metadata, tmp_path) as service,
        simulated_carrier(tmp_path) as carrier,
    ):
        clock = Clock(start)
        provisioner = Provisioner(carrier.adapter, clock=clock, **rules)
        service.broker.context.set_global(PROVISIONER, provisioner)
        line_events = service.watch(topics.PROVISIONING_LINE_EVENTS)
        orders_commands = service.watch(topics.ORDERS_COMMANDS)
        app = FastAPI()
        app.include_router(api.router)
        secure(app)
        app.state.sessions = service.sessions
        app.state.provisioner = provisioner
        transport = httpx.ASGITransport(app=app)
        async with (
            running(service.broker),
            httpx.AsyncClient(
                transport=transport, base_url="http://provisioning", headers=RENEWER
            ) as http,
        ):
            yield ProvisioningUnderTest(
                service, provisioner, clock, http, line_events, orders_commands, carrier
            )
