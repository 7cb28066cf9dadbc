"""The expiry sweeper: orders whose payment is not confirmed in time end EXPIRED."""

from datetime import UTC, datetime

from services.orders import orders
from services.orders.settings import OrdersSettings
from shared.outbox import run_and_stage
from shared.settings import specialise
from shared.worker import Runtime, every


async def expiry_sweeper(runtime: Runtime) -> None:
    settings = specialise(runtime.settings, OrdersSettings)

    async def sweep() -> None:
        await run_and_stage(
            runtime.sessions, lambda session: orders.expire_overdue(session, datetime.now(UTC))
        )

    await every(settings.expiry_sweep_interval_s, sweep, "expiry sweep")
