"""The provisioning database: each line's balance and every top-up asked for it,
with the few queries the service needs; the tables of usage, alerts and
auto-renewal, whose queries are in usage_db.py and renewals_db.py. (The carrier
keeps its ledger apart: it is another system, services/carrier_simulator/ locally.)"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    Uuid,
    case,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from services.provisioning.balances import Balance, Package
from services.provisioning.topup_states import UNSETTLED, TopUpStatus
from shared.db import as_utc, insert_new
from shared.events import TopUpLine
from shared.inbox import add_inbox_to
from shared.outbox import add_outbox_to

metadata = MetaData()
# Every service keeps an outbox (what it has to publish) and an inbox (what it has done).
add_outbox_to(metadata)
add_inbox_to(metadata)

lines = Table(
    "lines",
    metadata,
    Column("iccid", String(20), primary_key=True),
    Column("data_remaining_mb", Integer, nullable=False),
    Column("valid_until", DateTime(timezone=True), nullable=True),  # None: never topped up
    Column("unlimited_until", DateTime(timezone=True), nullable=True),
    Column("fair_use_remaining_mb", Integer, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The package cycle: started by each applied top-up (its order), it is what usage
    # percentages and alerts count against. None until the first top-up is applied.
    Column("cycle_order_id", Uuid, nullable=True),
    Column("cycle_started_at", DateTime(timezone=True), nullable=True),
    Column("cycle_quota_mb", Integer, nullable=True),  # data at the start; None: unlimited
    Column("cycle_used_mb", Integer, nullable=False, server_default="0"),  # overage included
    Column("cycle_overage_mb", Integer, nullable=False, server_default="0"),
    # Set once validity ended and what was left was forfeited (DataForfeited).
    Column("expired_at", DateTime(timezone=True), nullable=True),
    # The sweeper looks for lines near or past the end of their validity.
    Index("ix_lines_valid_until", "valid_until"),
)

usage_reports = Table(
    "usage_reports",
    metadata,
    # The carrier's report id (the message's event_id): a report is counted once.
    Column("report_id", Uuid, primary_key=True),
    Column("iccid", String(20), nullable=False),
    Column("used_mb", Integer, nullable=False),
    Column("applied_mb", Integer, nullable=False),  # taken from the balance
    Column("overage_mb", Integer, nullable=False),  # beyond the balance: kept, not lost
    Column("period_start", DateTime(timezone=True), nullable=False),
    Column("period_end", DateTime(timezone=True), nullable=False),
    Column("cycle_order_id", Uuid, nullable=True),  # None: the line had no cycle (unknown)
    Column("received_at", DateTime(timezone=True), nullable=False),
    Index("ix_usage_reports_iccid_received_at", "iccid", "received_at"),
)

line_alerts = Table(
    "line_alerts",
    metadata,
    # One alert per threshold per package cycle: the key decides, across redeliveries,
    # restarts and the sweeper racing a usage report.
    Column("iccid", String(20), primary_key=True),
    Column("cycle_order_id", Uuid, primary_key=True),
    Column("alert", String(32), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("raised_at", DateTime(timezone=True), nullable=False),
    Column("data_used_mb", Integer, nullable=False),
    Column("data_remaining_mb", Integer, nullable=True),
    Column("overage_mb", Integer, nullable=False),
    Column("valid_until", DateTime(timezone=True), nullable=False),
)

auto_renewals = Table(
    "auto_renewals",
    metadata,
    Column("iccid", String(20), primary_key=True),
    Column("status", String(16), nullable=False),  # active | paused | off
    Column("alert", String(32), nullable=False),  # the threshold that renews
    Column("package_id", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("payment_method", String(16), nullable=False),
    Column("payment_token", String(200), nullable=False),  # the provider's token, no card
    Column("msisdn", String(20), nullable=False),
    Column("email", String(254), nullable=False),
    Column("paused_reason", String(64), nullable=True),
    Column("paused_message", String(500), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The caller (API_TOKENS) who last set or stopped it; None: set before callers had names.
    Column("updated_by", String(100), nullable=True),
)

renewal_orders = Table(
    "renewal_orders",
    metadata,
    # f"autorenew:{iccid}:{cycle_order_id}:{alert}:{attempt}": one order per attempt per
    # crossing, and orders makes one order of one request_id whatever happens.
    Column("request_id", String(200), primary_key=True),
    Column("order_id", Uuid, nullable=False, unique=True),
    Column("iccid", String(20), nullable=False),
    Column("cycle_order_id", Uuid, nullable=False),
    Column("alert", String(32), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # due | placed | completed | failed | cancelled
    Column("due_at", DateTime(timezone=True), nullable=True),  # when a `due` one is placed
    Column("failure_reason", String(64), nullable=True),
    Column("failure_message", String(500), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_renewal_orders_iccid", "iccid"),
    Index("ix_renewal_orders_due", "status", "due_at"),
)

topups = Table(
    "topups",
    metadata,
    # `{order_id}:topup`: a line is topped up at most once per order.
    Column("idempotency_key", String(80), primary_key=True),
    Column("order_id", Uuid, nullable=False, index=True),
    Column("iccid", String(20), nullable=False, index=True),
    Column("package_id", String(64), nullable=False),
    Column("data_mb", Integer, nullable=True),  # None: unlimited
    Column("fair_use_mb", Integer, nullable=True),
    Column("bonus_mb", Integer, nullable=False),
    Column("validity_days", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),  # top-up calls sent to the carrier
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),  # None once settled
    # When the key was last sent to the carrier (or about to be): until that send can no
    # longer land, the carrier not knowing the key does not allow sending it again.
    Column("last_sent_at", DateTime(timezone=True), nullable=True),
    Column("last_error", String(500), nullable=True),
    Column("failure_reason", String(64), nullable=True),
    # The answer, kept so that a repeated command gets the very same one.
    Column("answer_event_id", Uuid, nullable=True),
    Column("stacking_rule", String(16), nullable=True),
    Column("valid_until", DateTime(timezone=True), nullable=True),
    Column("data_remaining_mb", Integer, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("settled_at", DateTime(timezone=True), nullable=True),
    Column("applied_at", DateTime(timezone=True), nullable=True),
    Index("ix_topups_due", "status", "next_attempt_at"),
)


@dataclass(frozen=True)
class TopUp:
    key: str
    order_id: uuid.UUID
    iccid: str
    package_id: str
    package: Package
    status: TopUpStatus
    attempts: int
    last_error: str | None
    failure_reason: str | None
    answer_event_id: uuid.UUID | None
    valid_until: datetime | None
    data_remaining_mb: int | None
    settled_at: datetime | None
    applied_at: datetime | None
    last_sent_at: datetime | None = None


async def insert_topups(
    session: AsyncSession, commands: list[TopUpLine], now: datetime, due_at: datetime
) -> set[str]:
    """Record new top-ups NEW, and their lines if unknown, in a statement per table (a
    batch's top-ups at once); the keys of those that did not exist yet."""
    created = await insert_new(session, topups, [_new_topup(c, now, due_at) for c in commands])
    # The line exists from its first top-up on, so recording the result only ever locks
    # and updates it (no racing inserts of a new line). Sorted: a lock order.
    new_lines = sorted({c.iccid for c in commands if c.idempotency_key in created})
    line_rows = [
        {"iccid": iccid, "data_remaining_mb": 0, "created_at": now, "updated_at": now}
        for iccid in new_lines
    ]
    await insert_new(session, lines, line_rows)
    return created


async def insert_topup(
    session: AsyncSession, command: TopUpLine, now: datetime, due_at: datetime
) -> bool:
    """Record one new top-up NEW, and its line if unknown; False when the key exists."""
    return command.idempotency_key in await insert_topups(session, [command], now, due_at)


def _new_topup(command: TopUpLine, now: datetime, due_at: datetime) -> dict[str, Any]:
    return {
        "idempotency_key": command.idempotency_key,
        "order_id": command.order_id,
        "iccid": command.iccid,
        "package_id": command.package_id,
        "data_mb": command.data_mb,
        "fair_use_mb": command.fair_use_mb,
        "bonus_mb": command.bonus_mb,
        "validity_days": command.validity_days,
        "status": TopUpStatus.NEW,
        "attempts": 0,
        "next_attempt_at": due_at,
        "last_sent_at": now,  # the first send follows this transaction
        "created_at": now,
        "updated_at": now,
    }


async def find_topups(session: AsyncSession, keys: list[str]) -> dict[str, TopUp]:
    """The top-ups of `keys` that exist, by key, in one statement."""
    query = select(topups).where(topups.c.idempotency_key.in_(keys))
    return {row.idempotency_key: _topup(row) for row in await session.execute(query)}


async def find_topup(session: AsyncSession, key: str, *, lock: bool = False) -> TopUp | None:
    query = select(topups).where(topups.c.idempotency_key == key)
    row = (await session.execute(query.with_for_update() if lock else query)).first()
    return None if row is None else _topup(row)


async def claim_due(
    session: AsyncSession, now: datetime, lease_until: datetime, limit: int
) -> list[TopUp]:
    """Unsettled top-ups whose time has come, pushed to `lease_until` so that no other
    instance takes them while this one talks to the carrier. SKIP LOCKED lets two
    instances claim at once without waiting for, or sharing, a row.

    A RETRYING one is sent once claimed, so it leaves the claim UNKNOWN, its send time
    recorded: should this instance die or stall past the lease mid-call, whoever takes
    it over asks the carrier first instead of sending it a second time. The claimed
    copies returned still say RETRYING: what to do with them."""
    rows = (
        await session.execute(
            select(topups)
            .where(topups.c.status.in_(UNSETTLED), topups.c.next_attempt_at <= now)
            .order_by(topups.c.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    claimed = [_topup(row) for row in rows]
    if claimed:
        await session.execute(
            update(topups)
            .where(topups.c.idempotency_key.in_([t.key for t in claimed]))
            .values(
                next_attempt_at=lease_until,
                status=case(
                    (topups.c.status == TopUpStatus.RETRYING, TopUpStatus.UNKNOWN.value),
                    else_=topups.c.status,
                ),
                last_sent_at=case(
                    (topups.c.status == TopUpStatus.RETRYING, now), else_=topups.c.last_sent_at
                ),
            )
        )
    return claimed


async def mark(session: AsyncSession, topup: TopUp, now: datetime, **values: Any) -> bool:
    """Move `topup` on, provided nobody moved it since it was read; False otherwise."""
    result = await session.execute(
        update(topups)
        .where(
            topups.c.idempotency_key == topup.key,
            topups.c.status == topup.status,
            topups.c.attempts == topup.attempts,
        )
        .values(updated_at=now, **values)
    )
    return bool(getattr(result, "rowcount", 0))


async def locked_balance(session: AsyncSession, iccid: str) -> Balance | None:
    row = (
        await session.execute(select(lines).where(lines.c.iccid == iccid).with_for_update())
    ).first()
    return None if row is None else balance_from_row(row)


async def save_balance(session: AsyncSession, iccid: str, balance: Balance, now: datetime) -> None:
    await session.execute(
        update(lines)
        .where(lines.c.iccid == iccid)
        .values(
            data_remaining_mb=balance.data_remaining_mb,
            valid_until=balance.valid_until,
            unlimited_until=balance.unlimited_until,
            fair_use_remaining_mb=balance.fair_use_remaining_mb,
            updated_at=now,
        )
    )


async def line_exists(session: AsyncSession, iccid: str) -> bool:
    return (await session.scalar(select(lines.c.iccid).where(lines.c.iccid == iccid))) is not None


async def history(session: AsyncSession, iccid: str) -> list[TopUp]:
    rows = await session.execute(
        select(topups).where(topups.c.iccid == iccid).order_by(topups.c.created_at)
    )
    return [_topup(row) for row in rows]


async def balance_of(session: AsyncSession, iccid: str) -> Balance | None:
    row = (await session.execute(select(lines).where(lines.c.iccid == iccid))).first()
    return None if row is None else balance_from_row(row)


def balance_from_row(row: Row[Any]) -> Balance | None:
    if row.valid_until is None:
        return None
    return Balance(
        data_remaining_mb=row.data_remaining_mb,
        valid_until=as_utc(row.valid_until),
        unlimited_until=utc_or_none(row.unlimited_until),
        fair_use_remaining_mb=row.fair_use_remaining_mb,
    )


def _topup(row: Row[Any]) -> TopUp:
    return TopUp(
        key=row.idempotency_key,
        order_id=row.order_id,
        iccid=row.iccid,
        package_id=row.package_id,
        package=Package(
            data_mb=row.data_mb,
            validity_days=row.validity_days,
            bonus_mb=row.bonus_mb,
            fair_use_mb=row.fair_use_mb,
        ),
        status=TopUpStatus(row.status),
        attempts=row.attempts,
        last_error=row.last_error,
        failure_reason=row.failure_reason,
        answer_event_id=row.answer_event_id,
        valid_until=utc_or_none(row.valid_until),
        data_remaining_mb=row.data_remaining_mb,
        settled_at=utc_or_none(row.settled_at),
        applied_at=utc_or_none(row.applied_at),
        last_sent_at=utc_or_none(row.last_sent_at),
    )


def utc_or_none(value: datetime | None) -> datetime | None:
    """A stored time as UTC (SQLite hands it back naive); None stays None."""
    return None if value is None else as_utc(value)
