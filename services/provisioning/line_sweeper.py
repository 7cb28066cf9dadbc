"""The line sweeper: every LINE_SWEEP_INTERVAL_S it forfeits what lines whose validity
has ended had left, raises the time-based alerts that are due (expires_in_<d>d), and
places the renewal orders whose retry is due.

Each line is its own transaction (usage.check_line), taken with SKIP LOCKED: two
instances share the work without waiting for each other, and a line that fails is
logged and met again next pass, never holding back the others.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.provisioning import renewals, usage, usage_db
from services.provisioning.provisioning import Provisioner, provisioner_of
from services.provisioning.usage_db import SweepKey
from shared.metrics import RECONCILER
from shared.worker import Runtime, every

log = logging.getLogger(__name__)

BATCH: Final = 50

Find = Callable[[AsyncSession, datetime, SweepKey | None, int], Awaitable[list[SweepKey]]]


async def sweep_lines(runtime: Runtime) -> None:
    provisioner = provisioner_of(runtime.broker)

    async def step() -> int:
        return await sweep_once(runtime.sessions, provisioner)

    await every(provisioner.sweep_interval_s, step, "line sweeper")


async def sweep_once(sessions: async_sessionmaker[AsyncSession], provisioner: Provisioner) -> int:
    """One pass; returns how many lines were looked at."""
    expiry_alerts_due = partial(usage_db.lines_with_expiry_alerts_due, rules=provisioner.alerts)
    swept = await _each_line(sessions, provisioner, usage_db.lines_to_expire, "expired")
    swept += await _each_line(sessions, provisioner, expiry_alerts_due, "expiry_alerted")
    placed = await renewals.place_due(sessions, provisioner)
    if placed:
        RECONCILER.labels("renewal_placed").inc(placed)
    return swept


async def _each_line(
    sessions: async_sessionmaker[AsyncSession], provisioner: Provisioner, find: Find, action: str
) -> int:
    """Check every line `find` names, a batch at a time, one transaction per line."""
    now = provisioner.clock()
    after: SweepKey | None = None
    seen = 0
    while True:
        async with sessions() as session:
            batch = await find(session, now, after, BATCH)
        for key in batch:
            iccid = key[1]
            try:
                if await usage.check_line(sessions, provisioner, iccid):
                    RECONCILER.labels(f"line_{action}").inc()
            except Exception:
                log.exception("line %s: sweep step failed; tried again next pass", iccid)
        seen += len(batch)
        if len(batch) < BATCH:
            return seen
        after = batch[-1]
