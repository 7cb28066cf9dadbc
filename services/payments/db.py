"""The payments database: one row per charge, keyed by its idempotency key, and the
refund of it; plus the few queries payments needs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    Uuid,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from services.payments.backoff import Backoff
from services.payments.states import UNSETTLED, PaymentStatus
from shared.events import Money, NextAction, PaymentMethod
from shared.inbox import add_inbox_to
from shared.outbox import add_outbox_to

metadata = MetaData()
# Every service keeps an outbox (what it has to publish) and an inbox (what it has done).
add_outbox_to(metadata)
add_inbox_to(metadata)

payments = Table(
    "payments",
    metadata,
    # `{order_id}:charge`: a second ChargePayment for the order is the same payment.
    Column("idempotency_key", String(80), primary_key=True),
    Column("order_id", Uuid, nullable=False, index=True),
    Column("iccid", String(20), nullable=False),
    Column("status", String(16), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),  # fee included
    Column("currency", String(3), nullable=False),
    Column("fee_minor", BigInteger, nullable=False),  # in the same currency
    Column("payment_method", String(16), nullable=False),
    Column("payment_token", String(255), nullable=False),  # the provider's token, never a card
    Column("provider_reference", String(64), index=True),
    # The customer's next step while PENDING (shared.events.NextAction, as JSON).
    Column("next_action", JSON),
    Column("decline_reason", String(64)),
    Column("decline_message", String(255)),
    # Set once a cancel is asked for, so the settler keeps cancelling, not waiting.
    Column("cancel_reason", String(255)),
    Column("attempts", Integer, nullable=False),  # provider calls for the current step
    # When the settler asks the provider next; NULL once settled.
    Column("next_check_at", DateTime(timezone=True), index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Each Stripe event acted on, once: inserted in the transaction of its effect.
stripe_events = Table(
    "stripe_events",
    metadata,
    Column("event_id", String(255), primary_key=True),
    Column("type", String(64), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

refunds = Table(
    "refunds",
    metadata,
    # `{order_id}:refund`; one refund per charge, whatever its key.
    Column("idempotency_key", String(80), primary_key=True),
    Column(
        "charge_key",
        String(80),
        ForeignKey("payments.idempotency_key"),
        nullable=False,
        unique=True,
    ),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("provider_reference", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("refunded_at", DateTime(timezone=True)),
)


@dataclass(frozen=True)
class Payment:
    key: str
    order_id: uuid.UUID
    iccid: str
    status: PaymentStatus
    amount: Money
    fee: Money
    method: PaymentMethod
    token: str
    provider_reference: str | None
    decline_reason: str | None
    decline_message: str | None
    cancel_reason: str | None
    attempts: int
    next_action: NextAction | None = None

    @classmethod
    def from_row(cls, row: Row[Any]) -> Payment:
        return cls(
            key=row.idempotency_key,
            order_id=row.order_id,
            iccid=row.iccid,
            status=PaymentStatus(row.status),
            amount=Money(amount_minor=row.amount_minor, currency=row.currency),
            fee=Money(amount_minor=row.fee_minor, currency=row.currency),
            method=cast(PaymentMethod, row.payment_method),
            token=row.payment_token,
            provider_reference=row.provider_reference,
            decline_reason=row.decline_reason,
            decline_message=row.decline_message,
            cancel_reason=row.cancel_reason,
            attempts=row.attempts,
            next_action=NextAction.model_validate(row.next_action) if row.next_action else None,
        )


@dataclass(frozen=True)
class Refund:
    key: str
    charge_key: str
    amount: Money
    provider_reference: str | None


def charge_key_for(order_id: uuid.UUID) -> str:
    return f"{order_id}:charge"


async def get_payment(session: AsyncSession, key: str, *, lock: bool = False) -> Payment | None:
    """The payment under `key`; with `lock`, held (on PostgreSQL) until the transaction ends."""
    query = select(payments).where(payments.c.idempotency_key == key)
    row = (await session.execute(query.with_for_update() if lock else query)).first()
    return None if row is None else Payment.from_row(row)


async def get_payments(session: AsyncSession, keys: list[str]) -> dict[str, Payment]:
    """The payments under `keys` that exist, by key, in one statement."""
    query = select(payments).where(payments.c.idempotency_key.in_(keys))
    return {row.idempotency_key: Payment.from_row(row) for row in await session.execute(query)}


async def payment_key_by_reference(session: AsyncSession, reference: str) -> str | None:
    return cast(
        "str | None",
        await session.scalar(
            select(payments.c.idempotency_key).where(payments.c.provider_reference == reference)
        ),
    )


async def get_refund(session: AsyncSession, charge_key: str) -> Refund | None:
    row = (await session.execute(select(refunds).where(refunds.c.charge_key == charge_key))).first()
    if row is None:
        return None
    return Refund(
        key=row.idempotency_key,
        charge_key=row.charge_key,
        amount=Money(amount_minor=row.amount_minor, currency=row.currency),
        provider_reference=row.provider_reference,
    )


async def update_payment(session: AsyncSession, seen: Payment, **values: Any) -> Payment | None:
    """Update the payment as read in `seen`; None when it changed since (and nothing is done).

    The compare-and-set on status and attempts keeps two workers from both acting
    on what they read, also on SQLite, where FOR UPDATE locks nothing.
    """
    row = (
        await session.execute(
            update(payments)
            .where(
                payments.c.idempotency_key == seen.key,
                payments.c.status == seen.status,
                payments.c.attempts == seen.attempts,
            )
            .values(updated_at=datetime.now(UTC), **values)
            .returning(*payments.c)
        )
    ).first()
    return None if row is None else Payment.from_row(row)


async def claim_due(
    session: AsyncSession, now: datetime, limit: int, backoff: Backoff
) -> list[Payment]:
    """Unsettled payments whose next check is due, claimed for one settler.

    Claiming moves each row's next check on, in the transaction that locked it,
    so another instance (which skips locked rows) finds it not due any more; if
    this one dies mid-way, the row is due again after its backoff.
    """
    rows = await session.execute(
        select(payments)
        .where(payments.c.status.in_(UNSETTLED), payments.c.next_check_at <= now)
        .order_by(payments.c.next_check_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = []
    for seen in map(Payment.from_row, rows.all()):
        attempts = seen.attempts + 1
        mine = await update_payment(
            session, seen, attempts=attempts, next_check_at=backoff.after(attempts, now)
        )
        if mine is not None:
            claimed.append(mine)
    return claimed
