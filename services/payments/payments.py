"""The payments service's logic (walking skeleton: every charge is captured)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.payments.db import payments
from shared import topics
from shared.db import insert_once
from shared.events import ChargePayment, Money, PaymentCaptured
from shared.kafka import Outgoing


async def charge(session: AsyncSession, command: ChargePayment) -> list[Outgoing]:
    """Charge once per idempotency key; a repeated command gets the first answer again."""
    await insert_once(
        session,
        insert(payments).values(
            idempotency_key=command.idempotency_key,
            order_id=command.order_id,
            iccid=command.iccid,
            amount_minor=command.amount.amount_minor,
            currency=command.amount.currency,
            status="CAPTURED",
            created_at=datetime.now(UTC),
        ),
    )
    row = (
        await session.execute(
            select(payments).where(payments.c.idempotency_key == command.idempotency_key)
        )
    ).one()
    captured = PaymentCaptured(
        order_id=row.order_id,
        iccid=row.iccid,
        amount=Money(amount_minor=row.amount_minor, currency=row.currency),
    )
    return [(topics.PAYMENTS_EVENTS, captured)]
