"""The orders service's logic: plain functions over one session and one transaction.

Each returns the messages to publish once its transaction has committed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.orders import saga
from services.orders.book import OrderBook, Row
from services.orders.catalog import Catalog
from services.orders.db import order_transitions, orders, rejected_requests
from services.orders.saga import OrderState, Step
from services.orders.validation import Accepted, Rejected, parse_request, validate
from shared import topics
from shared.db import as_utc
from shared.dead_letters import BusinessRuleViolation, MalformedMessage
from shared.events import (
    LineToppedUp,
    Money,
    OrderPlaced,
    OrderRejected,
    PaymentCancelled,
    PaymentCaptured,
    PaymentDeclined,
    PaymentPending,
    PaymentRefunded,
    PlaceOrder,
    TopUpFailed,
    order_id_for,
    orders_events,
)
from shared.kafka import Outgoing
from shared.limits import quoted
from shared.metrics import ORDERS, RECONCILER, REJECTIONS, SAGA_SECONDS

log = logging.getLogger(__name__)

PaymentEvent = (
    PaymentPending | PaymentCaptured | PaymentDeclined | PaymentCancelled | PaymentRefunded
)
ProvisioningEvent = LineToppedUp | TopUpFailed


async def place_order(
    session: AsyncSession, body: Any, catalog: Catalog, payment_timeout: timedelta
) -> list[Outgoing]:
    """Accept or reject an order request; a repeated request gets the first answer again."""
    book = OrderBook.of(session)
    request_id = body.get("request_id") if isinstance(body, dict) else None
    if usable_request_id(request_id):
        await book.load(session, [order_id_for(str(request_id))], with_requests=True)
    sent = place(book, body, catalog, payment_timeout)
    await book.flush(session)
    return sent


def place(
    book: OrderBook, body: Any, catalog: Catalog, payment_timeout: timedelta
) -> list[Outgoing]:
    """`place_order` on a book holding the request's order and rejection, if any."""
    now = datetime.now(UTC)
    parsed = parse_request(body)
    if isinstance(parsed, Rejected):
        return _reject_unparsable(book, body, parsed, now)
    if not usable_request_id(parsed.request_id):
        raise MalformedMessage("no usable request_id: it holds a NUL or a lone surrogate")
    previous = _answer_again(book, parsed.request_id, parsed)
    if previous is not None:
        return previous
    decision = validate(parsed, catalog, now)
    if isinstance(decision, Rejected):
        return _reject(book, parsed.request_id, parsed.iccid, decision, now)
    return _accept(book, decision, catalog.version, now + payment_timeout, now)


def _accept(
    book: OrderBook, accepted: Accepted, catalog_version: str, due_by: datetime, now: datetime
) -> list[Outgoing]:
    command, package, quote = accepted.command, accepted.package, accepted.quote
    row = Row(
        order_id=command.order_id,
        request_id=command.request_id,
        iccid=command.iccid,
        msisdn=command.msisdn,
        email=command.email,
        catalog_version=catalog_version,
        package_id=package.package_id,
        data_mb=package.data_mb,
        fair_use_mb=package.fair_use_mb,
        bonus_mb=quote.bonus_mb,
        validity_days=package.validity_days,
        promotion_code=quote.promotion_code,
        payment_method=command.payment_method,
        currency=quote.total.currency,
        price_minor=quote.price.amount_minor,
        discount_minor=quote.discount.amount_minor,
        fee_minor=quote.fee.amount_minor,
        total_minor=quote.total.amount_minor,
        captured_minor=None,
        state=OrderState.PLACED,
        nudges=0,
        payment_due_by=due_by,
        valid_until=None,
        created_at=now,
        updated_at=now,
        answer=None,
    )
    placed = _placed(row)
    row["answer"] = placed.model_dump_json()
    book.add(row)  # inserted when the book is written back (by another first: rolled back)
    book.record([_transition(row.order_id, None, OrderState.PLACED, "order placed", now)])
    sent = apply_steps(book, row, saga.start(_as_order(row), command.payment_token))
    return [(topics.ORDERS_EVENTS, placed), *sent]


async def on_payment_event(session: AsyncSession, event: PaymentEvent) -> list[Outgoing]:
    return await _in_book(session, event.order_id, lambda book: payment_event(book, event))


def payment_event(book: OrderBook, event: PaymentEvent) -> list[Outgoing]:
    row = _locked(book, event)
    return apply_steps(book, row, saga.on_payment_event(_as_order(row), event))


async def on_provisioning_event(session: AsyncSession, event: ProvisioningEvent) -> list[Outgoing]:
    return await _in_book(session, event.order_id, lambda book: provisioning_event(book, event))


async def _in_book(
    session: AsyncSession, order_id: uuid.UUID, act: Callable[[OrderBook], list[Outgoing]]
) -> list[Outgoing]:
    """`act` on the transaction's book, the order loaded (a batch's book has it already),
    and the book written back (a batch's, once, at its end)."""
    book = await OrderBook.of(session).load(session, [order_id])
    sent = act(book)
    await book.flush(session)
    return sent


def provisioning_event(book: OrderBook, event: ProvisioningEvent) -> list[Outgoing]:
    row = _locked(book, event)
    if isinstance(event, LineToppedUp) and row.state == OrderState.TOPUP_PENDING:
        book.change(row, valid_until=event.valid_until)
    return apply_steps(book, row, saga.on_provisioning_event(_as_order(row), event))


async def expire_overdue(session: AsyncSession, now: datetime, limit: int = 100) -> list[Outgoing]:
    """Orders whose payment was not confirmed by its deadline end EXPIRED."""
    overdue = await session.execute(
        select(orders)
        .where(orders.c.state == OrderState.PAYMENT_PENDING, orders.c.payment_due_by < now)
        .order_by(orders.c.payment_due_by)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    book = OrderBook.of(session)
    sent: list[Outgoing] = []
    for row in book.adopt(overdue.mappings()):
        RECONCILER.labels("order_expired").inc()
        sent += apply_steps(book, row, saga.on_payment_deadline(_as_order(row), now))
    await book.flush(session)
    return sent


async def nudge_stuck(
    session: AsyncSession, now: datetime, after: timedelta, most: timedelta, limit: int = 100
) -> list[Outgoing]:
    """Sagas waiting on another service with no progress for `after` (doubling with each
    nudge, up to `most`) ask again; each nudge is noted in the order's timeline."""
    candidates = await session.execute(
        select(orders)
        .where(orders.c.state.in_(saga.WAITING_ON_OTHERS), orders.c.updated_at < now - after)
        .order_by(orders.c.updated_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    book = OrderBook.of(session)
    sent: list[Outgoing] = []
    for row in book.adopt(candidates.mappings()):
        if as_utc(row.updated_at) + min(after * 2**row.nudges, most) > now:
            continue  # nudged recently: back off
        book.change(row, nudges=row.nudges + 1)
        RECONCILER.labels("saga_nudged").inc()
        sent += apply_steps(book, row, saga.on_no_progress(_as_order(row)))
    await book.flush(session)
    return sent


def apply_steps(book: OrderBook, row: Row, steps: list[Step]) -> list[Outgoing]:
    """Apply the steps (state, timeline entries, captured amount) to the order in the book;
    return what to send. However many steps, the order is written back once, as the
    last one leaves it, with their timeline entries in order."""
    if not steps:
        log.info("order %s is %s; message ignored", row.order_id, row.state)
        return []
    now = datetime.now(UTC)
    state = OrderState(row.state)
    values: dict[str, Any] = {"updated_at": now}
    timeline: list[dict[str, Any]] = []
    sent: list[Outgoing] = []
    for step in steps:
        if not step.note_only and not saga.can_transition(state, step.target):
            raise RuntimeError(f"saga bug: {state} -> {step.target} is not a transition")
        values["state"] = step.target
        if step.captured is not None:
            values["captured_minor"] = step.captured.amount_minor
        timeline.append(_transition(row.order_id, state, step.target, step.cause, now))
        if step.target in saga.OUTCOMES and not step.note_only:
            ORDERS.labels(step.target).inc()
            SAGA_SECONDS.labels(step.target).observe((now - as_utc(row.created_at)).total_seconds())
        state = step.target
        sent += step.send
    answers = [message for topic, message in sent if topic == topics.ORDERS_EVENTS]
    if answers:  # what a repeated request is answered with from now on
        values["answer"] = answers[-1].model_dump_json()
    book.change(row, **values)
    book.record(timeline)
    return sent


def _reject_unparsable(
    book: OrderBook, body: Any, rejected: Rejected, now: datetime
) -> list[Outgoing]:
    request_id = body.get("request_id") if isinstance(body, dict) else None
    if not usable_request_id(request_id):
        # No request_id, no order id to answer on: it goes to the dead-letter topic.
        raise MalformedMessage(f"no usable request_id; {rejected.message}")
    assert isinstance(request_id, str)
    previous = _answer_again(book, request_id, None)
    if previous is not None:
        return previous
    return _reject(book, request_id, str(body.get("iccid", "")), rejected, now)


def usable_request_id(value: object) -> bool:
    """A request id an order can be named and answered by: 1 to 200 characters that a
    database can store (no NUL, no lone surrogate). Anything else is dead-lettered."""
    if not isinstance(value, str) or not 1 <= len(value) <= 200 or "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _storable(text: str, most: int) -> str:
    """A publisher's text as a database takes it: no NUL, no lone surrogate, `most` long."""
    return text.encode(errors="replace").decode().replace("\x00", "")[:most]


def _reject(
    book: OrderBook, request_id: str, iccid: str, rejected: Rejected, now: datetime
) -> list[Outgoing]:
    REJECTIONS.labels(rejected.reason).inc()
    book.reject(
        Row(
            request_id=request_id, order_id=order_id_for(request_id),
            iccid=_storable(iccid, 32),
            reason=rejected.reason, message=rejected.message, at=now,
        )
    )  # fmt: skip
    return _answer_again(book, request_id, None) or []


def _answer_again(
    book: OrderBook, request_id: str, asked: PlaceOrder | None
) -> list[Outgoing] | None:
    """The answer a request already got, or None if it is new: the order's latest answer
    (OrderPlaced while the saga runs, then its outcome), the very message, event_id and
    all; or the rejection it got. The same request_id asking for another order (`asked`
    differs in line, package, currency, method or promotion) is refused instead. The
    book holds the request's order and rejection (an order's id is its request's)."""
    placed = book.orders.get(order_id_for(request_id))
    if placed is not None and placed.request_id == request_id:
        if asked is not None and (differs := _differences(placed, asked)):
            return [(topics.ORDERS_EVENTS, _reused(placed, asked, differs))]
        answer = orders_events.validate_json(placed.answer) if placed.answer else None
        return [(topics.ORDERS_EVENTS, answer or _placed(placed))]
    rejected = book.rejected.get(request_id)
    if rejected is not None:  # the same message every time: its event_id comes from the request
        answer = OrderRejected(
            event_id=uuid.uuid5(rejected.order_id, "OrderRejected"),
            occurred_at=as_utc(rejected.at),
            order_id=rejected.order_id, iccid=rejected.iccid, request_id=request_id,
            reason=rejected.reason, message=rejected.message,
        )  # fmt: skip
        return [(topics.ORDERS_EVENTS, answer)]
    return None


def _differences(placed: Any, asked: PlaceOrder) -> list[str]:
    """The fields in which a request differs from the order its request_id made."""
    same_fields = ("iccid", "package_id", "currency", "payment_method")
    differs = [name for name in same_fields if getattr(placed, name) != getattr(asked, name)]
    if (placed.promotion_code or "").upper() != (asked.promotion_code or "").upper():
        differs.append("promotion_code")
    return differs


def _reused(placed: Any, asked: PlaceOrder, differs: list[str]) -> OrderRejected:
    """Not an answer about the order (it goes on): about this request, refused, on the
    line the request named (its key), so its publisher reads it where it looks."""
    REJECTIONS.labels("request_id_reused").inc()
    return OrderRejected(
        order_id=placed.order_id, iccid=asked.iccid, request_id=placed.request_id,
        reason="request_id_reused",
        message=f"request_id {quoted(placed.request_id)} already placed order "
        f"{placed.order_id} with another {', '.join(differs)}; this request was not "
        "placed and that order goes on. Use a new request_id for a new order",
    )  # fmt: skip


def _money(row: Any, minor: int) -> Money:
    """An amount of the order's currency (every amount of an order is in it)."""
    return Money(amount_minor=minor, currency=row.currency)


def _placed(row: Any) -> OrderPlaced:
    return OrderPlaced(
        order_id=row.order_id,
        iccid=row.iccid,
        request_id=row.request_id,
        package_id=row.package_id,
        catalog_version=row.catalog_version,
        price=_money(row, row.price_minor),
        discount=_money(row, row.discount_minor),
        fee=_money(row, row.fee_minor),
        total=_money(row, row.total_minor),
        promotion_code=row.promotion_code,
        bonus_mb=row.bonus_mb,
        payment_method=row.payment_method,
    )


def _as_order(row: Any) -> saga.Order:
    return saga.Order(
        order_id=row.order_id,
        request_id=row.request_id,
        iccid=row.iccid,
        state=OrderState(row.state),
        package_id=row.package_id,
        data_mb=row.data_mb,
        fair_use_mb=row.fair_use_mb,
        bonus_mb=row.bonus_mb,
        validity_days=row.validity_days,
        total=_money(row, row.total_minor),
        fee=_money(row, row.fee_minor),
        payment_method=row.payment_method,
        captured=_money(row, row.captured_minor) if row.captured_minor is not None else None,
    )


def _locked(book: OrderBook, event: PaymentEvent | ProvisioningEvent) -> Row:
    """The order an event is about (loaded locked); an event about no order of ours is
    dead-lettered."""
    row = book.orders.get(event.order_id)
    if row is None:
        raise BusinessRuleViolation(f"{event.type} for unknown order {event.order_id}")
    return row


async def _load(session: AsyncSession, order_id: uuid.UUID) -> Any:
    return (await session.execute(select(orders).where(orders.c.order_id == order_id))).first()


def _transition(
    order_id: uuid.UUID, source: OrderState | None, target: OrderState, cause: str, at: datetime
) -> dict[str, Any]:
    return dict(order_id=order_id, from_state=source, to_state=target, cause=cause, at=at)


# --- reads ------------------------------------------------------------------------------


async def get_order(session: AsyncSession, order_id: uuid.UUID) -> dict[str, Any] | None:
    row = await _load(session, order_id)
    if row is None:
        return None
    timeline = await session.execute(
        select(order_transitions)
        .where(order_transitions.c.order_id == order_id)
        .order_by(order_transitions.c.id)
    )
    return {
        **_summary(row),
        "timeline": [
            {
                "from_state": t.from_state,
                "to_state": t.to_state,
                "cause": t.cause,
                "at": as_utc(t.at),
            }
            for t in timeline
        ],
    }


async def find_by_request(session: AsyncSession, request_id: str) -> dict[str, Any] | None:
    """The order a request made, or the rejection it got."""
    row = (await session.execute(select(orders).where(orders.c.request_id == request_id))).first()
    if row is not None:
        return await get_order(session, row.order_id)
    rejected = (
        await session.execute(
            select(rejected_requests).where(rejected_requests.c.request_id == request_id)
        )
    ).first()
    if rejected is None:
        return None
    return {
        "order_id": rejected.order_id,
        "request_id": request_id,
        "iccid": rejected.iccid,
        "state": "REJECTED",
        "reason": rejected.reason,
        "message": rejected.message,
        "at": as_utc(rejected.at),
    }


async def orders_of_line(session: AsyncSession, iccid: str) -> list[dict[str, Any]]:
    """The line's renewal history, newest first."""
    rows = await session.execute(
        select(orders).where(orders.c.iccid == iccid).order_by(orders.c.created_at.desc())
    )
    return [_summary(row) for row in rows]


def _summary(row: Any) -> dict[str, Any]:
    def money(minor: int | None) -> dict[str, Any] | None:
        return None if minor is None else _money(row, minor).model_dump()

    return {
        "order_id": row.order_id,
        "request_id": row.request_id,
        "iccid": row.iccid,
        "state": row.state,
        "package_id": row.package_id,
        "catalog_version": row.catalog_version,
        "payment_method": row.payment_method,
        "promotion_code": row.promotion_code,
        "bonus_mb": row.bonus_mb,
        "price": money(row.price_minor),
        "discount": money(row.discount_minor),
        "fee": money(row.fee_minor),
        "total": money(row.total_minor),
        "captured": money(row.captured_minor),
        "payment_due_by": as_utc(row.payment_due_by),
        "valid_until": as_utc(row.valid_until) if row.valid_until else None,
        "created_at": as_utc(row.created_at),
        "updated_at": as_utc(row.updated_at),
    }
