"""The carrier's ledger, in its own database (DATABASE_URL): every top-up order it
applied and the access tokens it issued. Each answer is committed before it is sent,
so a killed and restarted simulator keeps what it did, as a real carrier would.

The invariant the fault suite checks: our key (an order's `description`) never appears
in two orders; the API cannot enforce it (it has no idempotency key), the adapter must.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from services.carrier_simulator.packages import CarrierPackage
from shared.db import as_utc

metadata = MetaData()

topup_orders = Table(
    "carrier_topup_orders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("code", String(32), nullable=True),  # YYYYMMDD-<id>, set in the inserting transaction
    Column("iccid", String(32), nullable=False, index=True),
    Column("package_id", String(64), nullable=False),
    Column("description", String(255), nullable=False, index=True),  # our `{order_id}:topup`
    Column("status", String(16), nullable=False),  # completed
    Column("data_mb", Integer, nullable=False),  # 0 for an unlimited package
    Column("unlimited", Boolean, nullable=False),
    Column("validity_days", Integer, nullable=False),
    Column("used_mb", Integer, nullable=False),  # drawn from this package by the line's usage
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

access_tokens = Table(
    "carrier_access_tokens",
    metadata,
    Column("access_token", String(64), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Order:
    id: int
    code: str
    iccid: str
    package_id: str
    description: str
    status: str
    data_mb: int
    unlimited: bool
    validity_days: int
    used_mb: int
    created_at: datetime
    expires_at: datetime

    def remaining_mb(self) -> int:
        return 0 if self.unlimited else max(self.data_mb - self.used_mb, 0)

    def state(self, now: datetime) -> str:
        """As the API names a package's state."""
        if self.expires_at <= now:
            return "EXPIRED"
        if not self.unlimited and self.used_mb >= self.data_mb:
            return "FINISHED"
        return "ACTIVE"


async def place_order(
    session: AsyncSession, iccid: str, package: CarrierPackage, description: str, now: datetime
) -> Order:
    order_id = await session.scalar(
        insert(topup_orders)
        .values(
            iccid=iccid,
            package_id=package.package_id,
            description=description,
            status="completed",
            data_mb=package.data_mb,
            unlimited=package.unlimited,
            validity_days=package.days,
            used_mb=0,
            created_at=now,
            expires_at=now + timedelta(days=package.days),
        )
        .returning(topup_orders.c.id)
    )
    assert order_id is not None
    code = f"{now:%Y%m%d}-{order_id:06d}"
    await session.execute(
        update(topup_orders).where(topup_orders.c.id == order_id).values(code=code)
    )
    found = await find_order(session, order_id)
    assert found is not None  # just inserted in this transaction
    return found


async def find_order(session: AsyncSession, order_id: int) -> Order | None:
    row = (await session.execute(select(topup_orders).where(topup_orders.c.id == order_id))).first()
    return None if row is None else _order(row)


async def find_orders(
    session: AsyncSession, *, iccid_like: str, description_like: str, limit: int, offset: int
) -> tuple[list[Order], int]:
    """Orders filtered as the API does (a LIKE search on each filter given), newest first,
    one page of them, and how many match in all."""
    where = []
    if iccid_like:
        where.append(topup_orders.c.iccid.contains(iccid_like, autoescape=True))
    if description_like:
        where.append(topup_orders.c.description.contains(description_like, autoescape=True))
    total = await session.scalar(select(func.count()).select_from(topup_orders).where(*where))
    rows = await session.execute(
        select(topup_orders)
        .where(*where)
        .order_by(topup_orders.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [_order(row) for row in rows], int(total or 0)


async def line_orders(session: AsyncSession, iccid: str) -> list[Order]:
    """The line's orders, newest first."""
    rows = await session.execute(
        select(topup_orders).where(topup_orders.c.iccid == iccid).order_by(topup_orders.c.id.desc())
    )
    return [_order(row) for row in rows]


async def active_orders(session: AsyncSession, now: datetime) -> list[Order]:
    rows = await session.execute(
        select(topup_orders).where(topup_orders.c.expires_at > now).order_by(topup_orders.c.id)
    )
    return [_order(row) for row in rows]


async def draw_usage(session: AsyncSession, iccid: str, used_mb: int, now: datetime) -> None:
    """Take a line's usage from its active packages, oldest first; what none has left is
    counted on the newest (the network carried it: an overage)."""
    orders = [o for o in reversed(await line_orders(session, iccid)) if o.expires_at > now]
    for index, order in enumerate(orders):
        last = index == len(orders) - 1
        take = used_mb if (last or order.unlimited) else min(used_mb, order.remaining_mb())
        if take > 0:
            await session.execute(
                update(topup_orders)
                .where(topup_orders.c.id == order.id)
                .values(used_mb=topup_orders.c.used_mb + take)
            )
            used_mb -= take
        if used_mb <= 0:
            return


async def issue_token(session: AsyncSession, token: str, expires_at: datetime) -> None:
    await session.execute(insert(access_tokens).values(access_token=token, expires_at=expires_at))


async def token_expiry(session: AsyncSession, token: str) -> datetime | None:
    expires_at = await session.scalar(
        select(access_tokens.c.expires_at).where(access_tokens.c.access_token == token)
    )
    return None if expires_at is None else as_utc(expires_at)


def _order(row: Row[Any]) -> Order:
    return Order(
        id=row.id,
        code=row.code or str(row.id),
        iccid=row.iccid,
        package_id=row.package_id,
        description=row.description,
        status=row.status,
        data_mb=row.data_mb,
        unlimited=row.unlimited,
        validity_days=row.validity_days,
        used_mb=row.used_mb,
        created_at=as_utc(row.created_at),
        expires_at=as_utc(row.expires_at),
    )
