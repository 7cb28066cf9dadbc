"""The retry-and-settle loop: every `RETRY_INTERVAL_S` it takes the top-ups that are
due (RETRYING after their backoff, UNKNOWN ones, NEW ones past the grace period)
and moves each one step on, publishing what it settles."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.provisioning import provisioning
from services.provisioning.db import TopUp
from services.provisioning.provisioning import Provisioner, provisioner_of
from shared.metrics import RECONCILER
from shared.worker import Runtime, every, side_by_side

log = logging.getLogger(__name__)

SIDE_BY_SIDE = 10  # top-ups followed up at once


async def retry_and_settle(runtime: Runtime) -> None:
    provisioner = provisioner_of(runtime.broker)

    async def step() -> int:
        return await settle_due(runtime.sessions, provisioner)

    await every(provisioner.retry.interval_s, step, "provisioning retrier")


async def settle_due(sessions: async_sessionmaker[AsyncSession], provisioner: Provisioner) -> int:
    """One pass; returns how many top-ups were due.

    Each answer goes to the outbox in the transaction that records it. A top-up whose
    step fails is logged and left for its lease to run out: it must not hold back the
    others (a poison row is as bad as a poison message).
    """
    due = await provisioning.claim_due(sessions, provisioner)

    async def step(topup: TopUp) -> list[None]:
        RECONCILER.labels(f"topup_{topup.status.value.lower()}_followed_up").inc()
        try:
            await provisioning.follow_up(sessions, provisioner, topup)
        except Exception:
            log.exception("top-up %s: step failed; retried after its lease", topup.key)
        return []

    # The carrier's slow or lost answers are waited out together, not one after another.
    await side_by_side(due, step, at_most=SIDE_BY_SIDE)
    return len(due)
