"""The queries of usage and alerts: a line's package cycle (the cycle columns of `lines`),
the usage reports counted against it and the alerts it raised (tables in db.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, exists, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.provisioning.alerts import AlertRules, expires_in
from services.provisioning.balances import Balance
from services.provisioning.db import (
    balance_from_row,
    line_alerts,
    lines,
    usage_reports,
    utc_or_none,
)
from shared.db import as_utc, insert_once
from shared.events import LineAlertRaised, UsageReported

SweepKey = tuple[datetime, str]
"""Where a sweep over lines got to: (valid_until, iccid) of the last line it saw."""


@dataclass(frozen=True)
class LineCycle:
    """A line with its current package cycle (one the line has had a top-up applied)."""

    iccid: str
    balance: Balance
    order_id: uuid.UUID  # the order whose applied top-up started the cycle
    started_at: datetime
    quota_mb: int | None
    used_mb: int  # overage included
    overage_mb: int
    expired_at: datetime | None


async def start_cycle(
    session: AsyncSession, iccid: str, order_id: uuid.UUID, quota_mb: int | None, now: datetime
) -> None:
    """A new package cycle for the line, started by the top-up of `order_id` (in the
    transaction that applies it)."""
    await session.execute(
        update(lines)
        .where(lines.c.iccid == iccid)
        .values(
            cycle_order_id=order_id,
            cycle_started_at=now,
            cycle_quota_mb=quota_mb,
            cycle_used_mb=0,
            cycle_overage_mb=0,
            expired_at=None,
            updated_at=now,
        )
    )


async def locked_cycle(
    session: AsyncSession, iccid: str, *, skip_locked: bool = False
) -> LineCycle | None:
    """The line and its cycle, locked until the transaction ends; None when it has no
    cycle (never topped up), or, with `skip_locked`, when another transaction holds it."""
    query = select(lines).where(lines.c.iccid == iccid).with_for_update(skip_locked=skip_locked)
    row = (await session.execute(query)).first()
    return None if row is None else _line_cycle(row)


async def find_cycle(session: AsyncSession, iccid: str) -> LineCycle | None:
    row = (await session.execute(select(lines).where(lines.c.iccid == iccid))).first()
    return None if row is None else _line_cycle(row)


async def save_usage(
    session: AsyncSession, line: LineCycle, balance: Balance, used_mb: int, overage_mb: int,
    now: datetime,
) -> LineCycle:  # fmt: skip
    """The balance after a report, and the report added to the cycle's counts."""
    counted = replace(
        line,
        balance=balance,
        used_mb=line.used_mb + used_mb,
        overage_mb=line.overage_mb + overage_mb,
    )
    await session.execute(
        update(lines)
        .where(lines.c.iccid == line.iccid)
        .values(
            data_remaining_mb=balance.data_remaining_mb,
            fair_use_remaining_mb=balance.fair_use_remaining_mb,
            cycle_used_mb=counted.used_mb,
            cycle_overage_mb=counted.overage_mb,
            updated_at=now,
        )
    )
    return counted


async def forfeit(session: AsyncSession, line: LineCycle, now: datetime) -> LineCycle:
    """Validity ended: nothing is left (data, unlimited period, allowance); the cycle is
    expired. The validity itself stays, as the date it ended."""
    balance = Balance(data_remaining_mb=0, valid_until=line.balance.valid_until)
    await session.execute(
        update(lines)
        .where(lines.c.iccid == line.iccid)
        .values(
            data_remaining_mb=0,
            unlimited_until=None,
            fair_use_remaining_mb=None,
            expired_at=now,
            updated_at=now,
        )
    )
    return replace(line, balance=balance, expired_at=now)


async def insert_usage_report(session: AsyncSession, report: UsageReported, now: datetime) -> bool:
    """Record the report by its id, all of it as overage until `settle_usage_report` says
    what it took; False when it was recorded before (a redelivery)."""
    return await insert_once(
        session,
        insert(usage_reports).values(
            report_id=report.event_id,
            iccid=report.iccid,
            used_mb=report.used_mb,
            applied_mb=0,
            overage_mb=report.used_mb,
            period_start=report.period_start,
            period_end=report.period_end,
            cycle_order_id=None,
            received_at=now,
        ),
    )


async def settle_usage_report(
    session: AsyncSession, report_id: uuid.UUID, cycle_order_id: uuid.UUID, applied_mb: int,
    overage_mb: int,
) -> None:  # fmt: skip
    await session.execute(
        update(usage_reports)
        .where(usage_reports.c.report_id == report_id)
        .values(cycle_order_id=cycle_order_id, applied_mb=applied_mb, overage_mb=overage_mb)
    )


async def insert_alert(session: AsyncSession, alert: LineAlertRaised) -> bool:
    """Record the alert for its cycle; False when the cycle raised it before."""
    return await insert_once(
        session,
        insert(line_alerts).values(
            iccid=alert.iccid,
            cycle_order_id=alert.order_id,
            alert=alert.alert,
            kind=alert.kind,
            event_id=alert.event_id,
            raised_at=alert.occurred_at,
            data_used_mb=alert.data_used_mb,
            data_remaining_mb=alert.data_remaining_mb,
            overage_mb=alert.overage_mb,
            valid_until=alert.valid_until,
        ),
    )


async def lines_to_expire(
    session: AsyncSession, now: datetime, after: SweepKey | None, limit: int
) -> list[SweepKey]:
    """Lines whose validity has ended and whose cycle has not expired yet, in
    (valid_until, iccid) order from `after` on."""
    due = and_(lines.c.valid_until <= now, lines.c.expired_at.is_(None))
    return await _sweep(session, due, after, limit)


async def lines_with_expiry_alerts_due(
    session: AsyncSession, now: datetime, after: SweepKey | None, limit: int, *, rules: AlertRules
) -> list[SweepKey]:
    """Lines within a time-based alert's notice of the end of their validity that have not
    raised it in their cycle: a query over that window, not a look at every line."""
    if not rules.days_before_expiry:
        return []
    missing = [
        and_(
            lines.c.valid_until <= now + timedelta(days=days),
            ~exists().where(
                line_alerts.c.iccid == lines.c.iccid,
                line_alerts.c.cycle_order_id == lines.c.cycle_order_id,
                line_alerts.c.alert == expires_in(days),
            ),
        )
        for days in rules.days_before_expiry
    ]
    due = and_(lines.c.valid_until > now, lines.c.expired_at.is_(None), or_(*missing))
    return await _sweep(session, due, after, limit)


async def _sweep(
    session: AsyncSession, due: Any, after: SweepKey | None, limit: int
) -> list[SweepKey]:
    # Keyset paging: a line whose step failed is not met again in the same pass.
    query = select(lines.c.valid_until, lines.c.iccid).where(
        lines.c.cycle_order_id.is_not(None), due
    )
    if after is not None:
        valid_until, iccid = after
        query = query.where(
            or_(
                lines.c.valid_until > valid_until,
                and_(lines.c.valid_until == valid_until, lines.c.iccid > iccid),
            )
        )
    rows = await session.execute(query.order_by(lines.c.valid_until, lines.c.iccid).limit(limit))
    return [(as_utc(row.valid_until), row.iccid) for row in rows]


@dataclass(frozen=True)
class UsageReportRow:
    report_id: uuid.UUID
    used_mb: int
    applied_mb: int
    overage_mb: int
    period_start: datetime
    period_end: datetime
    cycle_order_id: uuid.UUID | None
    received_at: datetime


async def latest_usage_reports(
    session: AsyncSession, iccid: str, limit: int = 50
) -> list[UsageReportRow]:
    rows = await session.execute(
        select(usage_reports)
        .where(usage_reports.c.iccid == iccid)
        .order_by(usage_reports.c.received_at.desc(), usage_reports.c.period_end.desc())
        .limit(limit)
    )
    return [
        UsageReportRow(
            report_id=row.report_id,
            used_mb=row.used_mb,
            applied_mb=row.applied_mb,
            overage_mb=row.overage_mb,
            period_start=as_utc(row.period_start),
            period_end=as_utc(row.period_end),
            cycle_order_id=row.cycle_order_id,
            received_at=as_utc(row.received_at),
        )
        for row in rows
    ]


@dataclass(frozen=True)
class AlertRow:
    alert: str
    kind: str
    cycle_order_id: uuid.UUID
    raised_at: datetime
    event_id: uuid.UUID
    data_used_mb: int
    data_remaining_mb: int | None
    overage_mb: int
    valid_until: datetime


async def alerts_of(session: AsyncSession, iccid: str) -> list[AlertRow]:
    """Every alert the line raised, newest first."""
    rows = await session.execute(
        select(line_alerts)
        .where(line_alerts.c.iccid == iccid)
        .order_by(line_alerts.c.raised_at.desc(), line_alerts.c.alert.desc())
    )
    return [
        AlertRow(
            alert=row.alert,
            kind=row.kind,
            cycle_order_id=row.cycle_order_id,
            raised_at=as_utc(row.raised_at),
            event_id=row.event_id,
            data_used_mb=row.data_used_mb,
            data_remaining_mb=row.data_remaining_mb,
            overage_mb=row.overage_mb,
            valid_until=as_utc(row.valid_until),
        )
        for row in rows
    ]


def _line_cycle(row: Row[Any]) -> LineCycle | None:
    balance = balance_from_row(row)
    if balance is None or row.cycle_order_id is None or row.cycle_started_at is None:
        return None
    return LineCycle(
        iccid=row.iccid,
        balance=balance,
        order_id=row.cycle_order_id,
        started_at=as_utc(row.cycle_started_at),
        quota_mb=row.cycle_quota_mb,
        used_mb=row.cycle_used_mb,
        overage_mb=row.cycle_overage_mb,
        expired_at=utc_or_none(row.expired_at),
    )
