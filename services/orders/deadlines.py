"""The deadline sweeper: sagas that wait too long are moved on.

- a payment not confirmed by its deadline: the order EXPIRES and the charge is
  cancelled (a capture that still comes is refunded);
- a saga waiting on provisioning or on a refund with no progress: the command
  is sent again with its idempotency key, backing off (doubling) each time.
"""

from datetime import UTC, datetime, timedelta

from services.orders import orders
from services.orders.settings import OrdersSettings
from shared.outbox import run_and_stage
from shared.settings import specialise
from shared.worker import Runtime, every


async def deadline_sweeper(runtime: Runtime) -> None:
    settings = specialise(runtime.settings, OrdersSettings)
    after = timedelta(seconds=settings.stuck_after_s)
    most = timedelta(seconds=settings.stuck_backoff_max_s)

    async def sweep() -> None:
        now = datetime.now(UTC)
        await run_and_stage(runtime.sessions, lambda s: orders.expire_overdue(s, now))
        await run_and_stage(runtime.sessions, lambda s: orders.nudge_stuck(s, now, after, most))

    await every(settings.expiry_sweep_interval_s, sweep, "deadline sweep")
