"""The expiry sweeper: orders whose payment is not confirmed in time end EXPIRED."""

from datetime import UTC, datetime

from services.orders import orders
from services.orders.settings import OrdersSettings
from shared.kafka import publish_all
from shared.worker import Runtime, every


async def expiry_sweeper(runtime: Runtime) -> None:
    settings = runtime.settings
    interval = settings.expiry_sweep_interval_s if isinstance(settings, OrdersSettings) else 1.0

    async def sweep() -> None:
        async with runtime.sessions.begin() as session:
            outgoing = await orders.expire_overdue(session, datetime.now(UTC))
        await publish_all(runtime.broker, outgoing)

    await every(interval, sweep, "expiry sweep")
