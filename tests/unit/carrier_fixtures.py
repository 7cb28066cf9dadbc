"""The carrier as provisioning's tests meet it: the carrier simulator's app, served
in-process (httpx.ASGITransport) on a temporary SQLite ledger, and the real adapter
(services/provisioning/partner_api.py) talking to it. No test reaches the carrier any
other way. `behaviour` may be changed while a test runs (an outage, a slow carrier)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from sqlalchemy import select

from services.carrier_simulator import ledger
from services.carrier_simulator.app import Behaviour, build_app, start
from services.carrier_simulator.ledger import Order
from services.carrier_simulator.settings import CarrierSimulatorSettings
from services.provisioning.partner_api import PartnerApiCarrier

CLIENT_TIMEOUT_S = 1.0


@dataclass
class SimulatedCarrier:
    app: FastAPI
    adapter: PartnerApiCarrier
    settings: CarrierSimulatorSettings
    sent: list[tuple[str, str]]  # (method, path) of every request the adapter sent

    def top_up_requests(self) -> int:
        return self.sent.count(("POST", "/v2/orders/topups"))

    @property
    def behaviour(self) -> Behaviour:
        behaviour = self.app.state.behaviour
        assert isinstance(behaviour, Behaviour)
        return behaviour

    async def orders(self, description: str | None = None) -> list[Order]:
        """The top-up orders in its ledger (with this description), oldest first."""
        query = select(ledger.topup_orders).order_by(ledger.topup_orders.c.id)
        if description is not None:
            query = query.where(ledger.topup_orders.c.description == description)
        async with self.app.state.sessions() as session:
            rows = (await session.execute(query)).all()
        return [ledger._order(row) for row in rows]


def simulator_settings(tmp_path: Path, **overrides: Any) -> CarrierSimulatorSettings:
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'carrier.db'}",
        "carrier_latency_ms": 0,
        "carrier_hang_s": CLIENT_TIMEOUT_S * 3,
        "carrier_seed": 1,
    }
    return CarrierSimulatorSettings(**(values | overrides))


@asynccontextmanager
async def simulated_carrier(
    tmp_path: Path,
    *,
    timeout_s: float = CLIENT_TIMEOUT_S,
    event_hooks: dict[str, list[Any]] | None = None,
    over_sockets: bool = False,
    **settings: Any,
) -> AsyncIterator[SimulatedCarrier]:
    """`settings`: the simulator's (carrier_suspended_iccids=..., carrier_token_ttl_s=...).
    `over_sockets`: served by uvicorn, so that a request the client gave up on goes on
    at the carrier (in process, giving up cancels it)."""
    config = simulator_settings(tmp_path, **settings)
    app = build_app(config)
    await start(app)
    sent: list[tuple[str, str]] = []

    async def note(request: httpx.Request) -> None:
        sent.append((request.method, request.url.path))

    hooks = {"request": [note], "response": []}
    for kind, more in (event_hooks or {}).items():
        hooks[kind] = [*hooks.get(kind, []), *more]
    async with AsyncExitStack() as stack:
        if over_sockets:
            client = httpx.AsyncClient(
                base_url=await stack.enter_async_context(served(app)), event_hooks=hooks
            )
        else:
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://carrier.test",
                event_hooks=hooks,
            )
        adapter = PartnerApiCarrier(
            client, config.carrier_client_id, config.carrier_client_secret, timeout_s
        )
        try:
            yield SimulatedCarrier(app, adapter, config, sent)
        finally:
            await client.aclose()
            await app.state.engine.dispose()


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """`app` served by uvicorn on a free local port, its lifespan run, as the process of
    its own would serve it; its base URL. Real sockets: a held answer is a real timeout."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task  # it failed to start: say why
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
