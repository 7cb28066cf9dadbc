"""The orders service's logic: plain functions over one session and one transaction.

Each returns the messages to publish once its transaction has committed.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.orders.catalog import PACKAGES
from services.orders.db import order_transitions, orders
from services.orders.saga import OrderState, can_transition
from shared import topics
from shared.db import insert_once
from shared.events import (
    ChargePayment,
    LineToppedUp,
    Money,
    OrderCompleted,
    OrderPlaced,
    PaymentCaptured,
    PlaceOrder,
    TopUpLine,
)
from shared.kafka import Outgoing

log = logging.getLogger(__name__)


async def place_order(session: AsyncSession, command: PlaceOrder) -> list[Outgoing]:
    package = PACKAGES.get(command.package_id)
    if package is None:
        log.warning("order %s names unknown package %s", command.order_id, command.package_id)
        return []
    now = datetime.now(UTC)
    created = await insert_once(
        session,
        insert(orders).values(
            order_id=command.order_id,
            request_id=command.request_id,
            iccid=command.iccid,
            package_id=package.package_id,
            price_minor=package.price.amount_minor,
            currency=package.price.currency,
            state=OrderState.PAYMENT_PENDING,
            created_at=now,
            updated_at=now,
        ),
    )
    if not created:
        log.info("order %s already placed; duplicate request ignored", command.order_id)
        return []
    await _record_transition(session, command.order_id, None, OrderState.PAYMENT_PENDING, "placed")
    ids = {"order_id": command.order_id, "iccid": command.iccid}
    return [
        (
            topics.ORDERS_EVENTS,
            OrderPlaced(
                **ids,
                request_id=command.request_id,
                package_id=package.package_id,
                price=package.price,
            ),
        ),
        (
            topics.PAYMENTS_COMMANDS,
            ChargePayment(
                **ids, amount=package.price, idempotency_key=f"{command.order_id}:charge"
            ),
        ),
    ]


async def record_payment_captured(session: AsyncSession, event: PaymentCaptured) -> list[Outgoing]:
    order = await _move(session, event.order_id, OrderState.TOPUP_PENDING, "payment captured")
    if order is None:
        return []
    package = PACKAGES[order["package_id"]]
    return [
        (
            topics.PROVISIONING_COMMANDS,
            TopUpLine(
                order_id=event.order_id,
                iccid=event.iccid,
                data_mb=package.data_mb,
                validity_days=package.validity_days,
                idempotency_key=f"{event.order_id}:topup",
            ),
        )
    ]


async def record_line_topped_up(session: AsyncSession, event: LineToppedUp) -> list[Outgoing]:
    order = await _move(session, event.order_id, OrderState.COMPLETED, "line topped up")
    if order is None:
        return []
    return [(topics.ORDERS_EVENTS, OrderCompleted(order_id=event.order_id, iccid=event.iccid))]


async def get_order(session: AsyncSession, order_id: uuid.UUID) -> dict[str, Any] | None:
    row = (await session.execute(select(orders).where(orders.c.order_id == order_id))).first()
    if row is None:
        return None
    timeline = await session.execute(
        select(order_transitions)
        .where(order_transitions.c.order_id == order_id)
        .order_by(order_transitions.c.id)
    )
    order = dict(row._mapping)
    order["price"] = Money(amount_minor=order.pop("price_minor"), currency=order.pop("currency"))
    order["timeline"] = [
        {k: t[k] for k in ("from_state", "to_state", "cause", "at")}
        for t in (r._mapping for r in timeline)
    ]
    return order


async def _move(
    session: AsyncSession, order_id: uuid.UUID, target: OrderState, cause: str
) -> dict[str, Any] | None:
    """Move an order to `target`; a move from the wrong state is a logged no-op.

    The row is locked (on PostgreSQL) so two deliveries cannot both move it.
    """
    row = (
        await session.execute(select(orders).where(orders.c.order_id == order_id).with_for_update())
    ).first()
    if row is None:
        log.warning("%s for unknown order %s ignored", cause, order_id)
        return None
    current = OrderState(row.state)
    if not can_transition(current, target):
        log.info("order %s is %s; '%s' ignored", order_id, current, cause)
        return None
    await session.execute(
        update(orders)
        .where(orders.c.order_id == order_id)
        .values(state=target, updated_at=datetime.now(UTC))
    )
    await _record_transition(session, order_id, current, target, cause)
    return dict(row._mapping)


async def _record_transition(
    session: AsyncSession,
    order_id: uuid.UUID,
    source: OrderState | None,
    target: OrderState,
    cause: str,
) -> None:
    await session.execute(
        insert(order_transitions).values(
            order_id=order_id,
            from_state=source,
            to_state=target,
            cause=cause,
            at=datetime.now(UTC),
        )
    )
