"""The provisioning service's logic: plain functions over one session and one transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.provisioning.balances import Balance, apply_top_up
from services.provisioning.db import lines, topups
from shared import topics
from shared.db import as_utc, insert_once
from shared.events import LineToppedUp, TopUpLine
from shared.kafka import Outgoing


async def top_up(session: AsyncSession, command: TopUpLine) -> list[Outgoing]:
    """Top the line up once per idempotency key; a repeat gets the first answer again."""
    now = datetime.now(UTC)
    current = await _locked_balance(session, command.iccid)
    new = apply_top_up(current, command.data_mb, command.validity_days, now)
    applied = await insert_once(
        session,
        insert(topups).values(
            idempotency_key=command.idempotency_key,
            order_id=command.order_id,
            iccid=command.iccid,
            data_mb=command.data_mb,
            validity_days=command.validity_days,
            valid_until=new.valid_until,
            applied_at=now,
        ),
    )
    if applied:
        await _save_balance(session, command.iccid, new, exists=current is not None, now=now)
    row = (
        await session.execute(
            select(topups).where(topups.c.idempotency_key == command.idempotency_key)
        )
    ).one()
    done = LineToppedUp(
        order_id=row.order_id,
        iccid=row.iccid,
        data_mb=row.data_mb,
        valid_until=as_utc(row.valid_until),
    )
    return [(topics.PROVISIONING_EVENTS, done)]


async def get_line(session: AsyncSession, iccid: str) -> dict[str, Any] | None:
    line = (await session.execute(select(lines).where(lines.c.iccid == iccid))).first()
    if line is None:
        return None
    history = await session.execute(
        select(topups).where(topups.c.iccid == iccid).order_by(topups.c.applied_at)
    )
    return {
        "iccid": iccid,
        "data_remaining_mb": line.data_remaining_mb,
        "valid_until": as_utc(line.valid_until),
        "topups": [
            {
                "order_id": t.order_id,
                "data_mb": t.data_mb,
                "validity_days": t.validity_days,
                "applied_at": as_utc(t.applied_at),
            }
            for t in history
        ],
    }


async def _locked_balance(session: AsyncSession, iccid: str) -> Balance | None:
    row = (
        await session.execute(select(lines).where(lines.c.iccid == iccid).with_for_update())
    ).first()
    if row is None:
        return None
    return Balance(row.data_remaining_mb, as_utc(row.valid_until))


async def _save_balance(
    session: AsyncSession, iccid: str, balance: Balance, *, exists: bool, now: datetime
) -> None:
    values = {
        "data_remaining_mb": balance.data_remaining_mb,
        "valid_until": balance.valid_until,
        "updated_at": now,
    }
    if exists:
        await session.execute(update(lines).where(lines.c.iccid == iccid).values(**values))
    else:
        await session.execute(insert(lines).values(iccid=iccid, **values))
