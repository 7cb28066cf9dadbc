"""Usage reports from the carrier, each counted once against the line's package cycle,
the alerts the cycle raises, and the forfeiture of what is left when validity ends
(docs/usage-alerts.md; which alerts are due is decided in alerts.py).

Every step here runs in one transaction holding the line's lock and stages what it
raises (LineAlertRaised, DataForfeited, and the renewal orders an alert asks for) in the
outbox of that same transaction: a change and its events commit together or not at all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.provisioning import renewals, usage_db
from services.provisioning.alerts import Cycle, crossed, drawable_mb
from services.provisioning.balances import Balance, balance_at, metered_mb
from services.provisioning.provisioning import Provisioner
from services.provisioning.usage_db import LineCycle
from shared import topics
from shared.events import DataForfeited, LineAlertRaised, UsageReported
from shared.kafka import Outgoing
from shared.outbox import staged

log = logging.getLogger(__name__)

USAGE_REPORTS = Counter(
    "topup_usage_reports_total",
    "Usage reports: counted, redelivered, or for a line without a package cycle",
    ["outcome"],
)
LINE_ALERTS = Counter("topup_line_alerts_total", "Line alerts raised", ["alert"])
FORFEITED_MB = Counter("topup_forfeited_mb_total", "Data forfeited when validity ended")


# --- pure -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Taken:
    """What a usage report did to a balance."""

    balance: Balance
    applied_mb: int  # taken from the balance (or covered by an uncapped unlimited period)
    overage_mb: int  # beyond the balance: recorded, never taken below 0


def take(balance: Balance, used_mb: int, now: datetime) -> Taken:
    """Usage draws on the metered data, or, while an unlimited period runs, on its fair-use
    allowance (the metered data is kept for after it; an uncapped period covers it all).
    Nothing goes below 0: the excess is overage. An ended validity covers nothing."""
    usable = balance_at(balance, now)
    if usable is None:
        return Taken(balance, 0, used_mb)
    if usable.unlimited_at(now):
        if usable.fair_use_remaining_mb is None:
            return Taken(balance, used_mb, 0)
        applied = min(used_mb, usable.fair_use_remaining_mb)
        left = usable.fair_use_remaining_mb - applied
        return Taken(replace(balance, fair_use_remaining_mb=left), applied, used_mb - applied)
    applied = min(used_mb, usable.data_remaining_mb)
    left = usable.data_remaining_mb - applied
    return Taken(replace(balance, data_remaining_mb=left), applied, used_mb - applied)


def cycle_of(line: LineCycle, now: datetime) -> Cycle:
    return Cycle(
        order_id=line.order_id,
        started_at=line.started_at,
        quota_mb=line.quota_mb,
        used_mb=line.used_mb,
        overage_mb=line.overage_mb,
        remaining_mb=drawable_mb(line.balance, now),
        valid_until=line.balance.valid_until,
        expired=line.expired_at is not None,
    )


def expiry_due(line: LineCycle, now: datetime) -> bool:
    return line.expired_at is None and now >= line.balance.valid_until


# --- the steps ----------------------------------------------------------------------------


async def record_usage(
    sessions: async_sessionmaker[AsyncSession], provisioner: Provisioner, report: UsageReported
) -> list[Outgoing]:
    """Count a usage report once against the line's cycle and raise what it crossed."""
    async with sessions.begin() as session:
        return await staged(session, await count_usage(session, provisioner, report))


async def count_usage(
    session: AsyncSession, provisioner: Provisioner, report: UsageReported
) -> list[Outgoing]:
    """`record_usage` in `session`'s transaction (a consumer's batch, or its own)."""
    now = provisioner.clock()
    if not await usage_db.insert_usage_report(session, report, now):
        USAGE_REPORTS.labels("redelivered").inc()
        log.info("usage report %s for line %s counted before", report.event_id, report.iccid)
        return []
    line = await usage_db.locked_cycle(session, report.iccid)
    if line is None:
        # Kept as it came (all of it overage), for whoever reconciles with the carrier.
        USAGE_REPORTS.labels("no_cycle").inc()
        log.warning(
            "usage report %s: line %s has no package cycle; %d MB recorded as overage",
            report.event_id, report.iccid, report.used_mb,
        )  # fmt: skip
        return []
    line, outgoing = await _expire_if_ended(session, line, now)
    taken = take(line.balance, report.used_mb, now)
    line = await usage_db.save_usage(
        session, line, taken.balance, report.used_mb, taken.overage_mb, now
    )
    await usage_db.settle_usage_report(
        session, report.event_id, line.order_id, taken.applied_mb, taken.overage_mb
    )
    USAGE_REPORTS.labels("counted").inc()
    if taken.overage_mb:
        log.warning(
            "line %s used %d MB beyond its balance (report %s)",
            line.iccid, taken.overage_mb, report.event_id,
        )  # fmt: skip
    return outgoing + await raise_alerts(session, provisioner, line, now)


async def check_line(
    sessions: async_sessionmaker[AsyncSession], provisioner: Provisioner, iccid: str
) -> list[Outgoing]:
    """What time alone does to a line (the sweeper's step): forfeit what is left once its
    validity has ended, or raise the time-based alerts now due. A line another instance
    is working on is skipped, not waited for; the next pass sees it again if needed."""
    now = provisioner.clock()
    async with sessions.begin() as session:
        line = await usage_db.locked_cycle(session, iccid, skip_locked=True)
        if line is None:
            return []
        line, outgoing = await _expire_if_ended(session, line, now)
        outgoing += await raise_alerts(session, provisioner, line, now)
        return await staged(session, outgoing)


async def _expire_if_ended(
    session: AsyncSession, line: LineCycle, now: datetime
) -> tuple[LineCycle, list[Outgoing]]:
    """Forfeit what is left once validity has ended (under either stacking rule an expired
    line's data is gone); the validity_ended alert follows from the expired cycle."""
    if not expiry_due(line, now):
        return line, []
    balance = line.balance
    unlimited_to_the_end = (
        balance.unlimited_until is not None and balance.unlimited_until >= balance.valid_until
    )
    forfeited = DataForfeited(
        order_id=line.order_id,
        iccid=line.iccid,
        occurred_at=now,
        forfeited_mb=balance.data_remaining_mb,
        fair_use_forfeited_mb=balance.fair_use_remaining_mb if unlimited_to_the_end else None,
        valid_until=balance.valid_until,
    )
    expired = await usage_db.forfeit(session, line, now)
    FORFEITED_MB.inc(forfeited.forfeited_mb)
    log.info(
        "line %s: validity ended %s; %d MB forfeited",
        line.iccid, balance.valid_until.isoformat(), forfeited.forfeited_mb,
    )  # fmt: skip
    return expired, [(topics.PROVISIONING_LINE_EVENTS, forfeited)]


async def raise_alerts(
    session: AsyncSession, provisioner: Provisioner, line: LineCycle, now: datetime
) -> list[Outgoing]:
    """Record each threshold the cycle has crossed and not raised yet; the events of the
    newly recorded ones, and the renewal orders they ask for."""
    cycle = cycle_of(line, now)
    raised: list[LineAlertRaised] = []
    for threshold in crossed(cycle, provisioner.alerts, now):
        alert = LineAlertRaised(
            order_id=cycle.order_id,
            iccid=line.iccid,
            occurred_at=now,
            alert=threshold.alert,
            kind=threshold.kind,
            cycle_started_at=cycle.started_at,
            data_quota_mb=cycle.quota_mb,
            data_used_mb=cycle.used_mb,
            data_remaining_mb=metered_mb(line.balance, now),
            overage_mb=cycle.overage_mb,
            valid_until=cycle.valid_until,
        )
        if await usage_db.insert_alert(session, alert):
            raised.append(alert)
    if not raised:
        return []
    for alert in raised:
        LINE_ALERTS.labels(alert.alert).inc()
    log.info("line %s raised %s", line.iccid, ", ".join(a.alert for a in raised))
    renewing = await renewals.on_alerts_raised(session, provisioner, raised, now)
    return [(topics.PROVISIONING_LINE_EVENTS, alert) for alert in raised] + renewing
