"""Auto-renewal's queries: a line's saved settings (auto_renewals) and the renewal orders
placed for it (renewal_orders). The tables are in db.py; the decisions in renewals.py."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.provisioning.db import auto_renewals, lines, renewal_orders, utc_or_none
from shared.db import as_utc, insert_once


class AutoRenewalStatus(StrEnum):
    ACTIVE = "active"  # renews when the chosen threshold is crossed
    PAUSED = "paused"  # stopped trying (paused_reason says why) until the line opts in again
    OFF = "off"  # opted out


class RenewalOrderStatus(StrEnum):
    DUE = "due"  # a retry, placed by the line sweeper once due_at has come
    PLACED = "placed"  # its PlaceOrder is staged; waiting for the order's outcome
    COMPLETED = "completed"  # the line was topped up
    FAILED = "failed"  # the order failed (failure_reason); a retry may follow
    CANCELLED = "cancelled"  # a due retry not placed: opted out, paused or superseded


@dataclass(frozen=True)
class RenewalSettings:
    """What a renewal order is placed with: the line's saved choice."""

    alert: str
    package_id: str
    currency: str
    payment_method: str
    payment_token: str
    msisdn: str
    email: str


@dataclass(frozen=True)
class AutoRenewal:
    iccid: str
    status: AutoRenewalStatus
    settings: RenewalSettings
    paused_reason: str | None
    paused_message: str | None
    created_at: datetime
    updated_at: datetime
    updated_by: str | None  # the caller who last set or stopped it


@dataclass(frozen=True)
class RenewalOrder:
    request_id: str
    order_id: uuid.UUID
    iccid: str
    cycle_order_id: uuid.UUID
    alert: str
    attempt: int
    status: RenewalOrderStatus
    due_at: datetime | None
    failure_reason: str | None
    failure_message: str | None
    created_at: datetime
    updated_at: datetime


# --- settings -------------------------------------------------------------------------


async def find_auto_renewal(
    session: AsyncSession, iccid: str, *, lock: bool = False
) -> AutoRenewal | None:
    query = select(auto_renewals).where(auto_renewals.c.iccid == iccid)
    row = (await session.execute(query.with_for_update() if lock else query)).first()
    return None if row is None else _auto_renewal(row)


async def opt_in(
    session: AsyncSession, iccid: str, settings: RenewalSettings, now: datetime, by: str
) -> None:
    """Save the settings, status active: a new opt-in, an update, or a paused one resumed;
    `by` is the caller who did it."""
    values = {
        **vars(settings),
        "status": AutoRenewalStatus.ACTIVE,
        "paused_reason": None,
        "paused_message": None,
        "updated_at": now,
        "updated_by": by,
    }
    created = await insert_once(
        session, insert(auto_renewals).values(iccid=iccid, created_at=now, **values)
    )
    if not created:
        await session.execute(
            update(auto_renewals).where(auto_renewals.c.iccid == iccid).values(**values)
        )


async def opt_out(session: AsyncSession, iccid: str, now: datetime, by: str) -> bool:
    """Status off (the settings are kept, for the record); False if it never opted in."""
    result = await session.execute(
        update(auto_renewals)
        .where(auto_renewals.c.iccid == iccid)
        .values(status=AutoRenewalStatus.OFF, updated_at=now, updated_by=by)
    )
    return bool(getattr(result, "rowcount", 0))


async def pause(
    session: AsyncSession, iccid: str, reason: str, message: str, now: datetime
) -> bool:
    """Pause an active auto-renewal; False if it is not active (opted out, paused)."""
    result = await session.execute(
        update(auto_renewals)
        .where(
            auto_renewals.c.iccid == iccid,
            auto_renewals.c.status == AutoRenewalStatus.ACTIVE,
        )
        .values(
            status=AutoRenewalStatus.PAUSED,
            paused_reason=reason,
            paused_message=message[:500],
            updated_at=now,
        )
    )
    return bool(getattr(result, "rowcount", 0))


# --- renewal orders -------------------------------------------------------------------


async def insert_renewal_order(
    session: AsyncSession,
    *,
    request_id: str,
    order_id: uuid.UUID,
    iccid: str,
    cycle_order_id: uuid.UUID,
    alert: str,
    attempt: int,
    status: RenewalOrderStatus,
    now: datetime,
    due_at: datetime | None = None,
) -> bool:
    """Record a renewal order; False when its request_id is there already."""
    return await insert_once(
        session,
        insert(renewal_orders).values(
            request_id=request_id,
            order_id=order_id,
            iccid=iccid,
            cycle_order_id=cycle_order_id,
            alert=alert,
            attempt=attempt,
            status=status,
            due_at=due_at,
            created_at=now,
            updated_at=now,
        ),
    )


async def find_renewal_order(
    session: AsyncSession, request_id: str, *, lock: bool = False
) -> RenewalOrder | None:
    query = select(renewal_orders).where(renewal_orders.c.request_id == request_id)
    row = (await session.execute(query.with_for_update() if lock else query)).first()
    return None if row is None else _renewal_order(row)


async def move_renewal_order(
    session: AsyncSession,
    request_id: str,
    *,
    was: RenewalOrderStatus,
    to: RenewalOrderStatus,
    now: datetime,
    reason: str | None = None,
    message: str | None = None,
) -> bool:
    """Move a renewal order on, provided it is still `was`; False otherwise (a redelivered
    event, or a second instance that got there first)."""
    values: dict[str, Any] = {"status": to, "updated_at": now}
    if reason is not None:
        values |= {"failure_reason": reason[:64], "failure_message": (message or "")[:500]}
    result = await session.execute(
        update(renewal_orders)
        .where(renewal_orders.c.request_id == request_id, renewal_orders.c.status == was)
        .values(**values)
    )
    return bool(getattr(result, "rowcount", 0))


async def claim_due_renewals(
    session: AsyncSession, now: datetime, limit: int
) -> list[RenewalOrder]:
    """Retries whose time has come, locked for this transaction. SKIP LOCKED lets two
    instances sweep at once without waiting for, or sharing, a row."""
    rows = await session.execute(
        select(renewal_orders)
        .where(
            renewal_orders.c.status == RenewalOrderStatus.DUE,
            renewal_orders.c.due_at <= now,
        )
        .order_by(renewal_orders.c.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [_renewal_order(row) for row in rows]


async def renewal_orders_of(session: AsyncSession, iccid: str) -> list[RenewalOrder]:
    rows = await session.execute(
        select(renewal_orders)
        .where(renewal_orders.c.iccid == iccid)
        .order_by(renewal_orders.c.created_at, renewal_orders.c.attempt)
    )
    return [_renewal_order(row) for row in rows]


async def current_cycle(session: AsyncSession, iccid: str) -> uuid.UUID | None:
    """The order whose top-up started the line's current package cycle."""
    cycle: uuid.UUID | None = await session.scalar(
        select(lines.c.cycle_order_id).where(lines.c.iccid == iccid)
    )
    return cycle


def _auto_renewal(row: Row[Any]) -> AutoRenewal:
    return AutoRenewal(
        iccid=row.iccid,
        status=AutoRenewalStatus(row.status),
        settings=RenewalSettings(
            alert=row.alert,
            package_id=row.package_id,
            currency=row.currency,
            payment_method=row.payment_method,
            payment_token=row.payment_token,
            msisdn=row.msisdn,
            email=row.email,
        ),
        paused_reason=row.paused_reason,
        paused_message=row.paused_message,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        updated_by=row.updated_by,
    )


def _renewal_order(row: Row[Any]) -> RenewalOrder:
    return RenewalOrder(
        request_id=row.request_id,
        order_id=row.order_id,
        iccid=row.iccid,
        cycle_order_id=row.cycle_order_id,
        alert=row.alert,
        attempt=row.attempt,
        status=RenewalOrderStatus(row.status),
        due_at=utc_or_none(row.due_at),
        failure_reason=row.failure_reason,
        failure_message=row.failure_message,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )
