"""The settler: a background loop that settles what no answer settled yet.

It asks the provider, under the same idempotency key, about charges that are
PENDING or UNKNOWN, NEW ones older than the grace period (their caller crashed
between its two transactions) and refunds still REFUND_PENDING. Each row waits
longer after every unanswered check (exponential backoff, capped), so nothing
loops hot.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from services.payments import payments
from services.payments.backoff import Backoff
from services.payments.context import provider_in
from services.payments.db import Payment, claim_due
from services.payments.payments import SessionFactory
from services.payments.provider import PaymentProvider
from services.payments.settings import PaymentsSettings
from services.payments.states import PaymentStatus
from shared.kafka import Outgoing
from shared.metrics import RECONCILER
from shared.settings import specialise
from shared.worker import Runtime, every, side_by_side

log = logging.getLogger(__name__)

# Payments asked about at once: a provider's slow or lost answers are waited out together.
SIDE_BY_SIDE = 10


async def settler(runtime: Runtime) -> None:
    """A `BackgroundTask`: settle due payments every SETTLE_INTERVAL_S until cancelled."""
    settings = specialise(runtime.settings, PaymentsSettings)
    provider = provider_in(runtime.broker)

    async def step() -> None:
        await settle_due(
            runtime.sessions, provider, settings.backoff, limit=settings.settle_batch_size
        )

    await every(settings.settle_interval_s, step, "payments settler")


async def settle_due(
    sessions: SessionFactory,
    provider: PaymentProvider,
    backoff: Backoff,
    *,
    limit: int = 50,
    now: datetime | None = None,
) -> list[Outgoing]:
    """Ask the provider about every payment whose next check is due; the answers to publish."""
    async with sessions.begin() as session:
        due = await claim_due(session, now or datetime.now(UTC), limit, backoff)

    async def settle(payment: Payment) -> list[Outgoing]:
        RECONCILER.labels(f"payment_{payment.status.value.lower()}_settled").inc()
        step = (
            payments.settle_refund
            if payment.status is PaymentStatus.REFUND_PENDING
            else payments.settle_charge
        )
        try:
            return await step(sessions, provider, backoff, payment)
        except Exception:
            # One bad row must not hold up the others; it is due again after its backoff.
            log.exception("settling payment %s failed", payment.key)
            return []

    return await side_by_side(due, settle, at_most=SIDE_BY_SIDE)
