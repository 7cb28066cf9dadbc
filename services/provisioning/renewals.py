"""Auto-renewal: a line opted in renews itself through the normal saga when it crosses
its chosen threshold (docs/auto-renewal.md).

1. `on_alerts_raised`: in the transaction that records a LineAlertRaised, the line's
   chosen threshold (while auto-renewal is active) records renewal order attempt 1 and
   returns its PlaceOrder, to be staged in the same transaction.
2. `on_order_event`: the outcome of a renewal order settles it: completed; or failed,
   and then either a retry due later or, after the bound (or a rejection), a pause
   with an AutoRenewalPaused event.
3. `place_due`: the line sweeper places the retries whose time has come.

Every renewal order's request_id is derived from the line, the package cycle, the
threshold and the attempt, so orders makes one order of it whatever is redelivered.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.provisioning import renewals_db as rdb
from services.provisioning.provisioning import Provisioner
from services.provisioning.renewal_policy import RenewalPolicy
from services.provisioning.renewals_db import (
    AutoRenewalStatus,
    RenewalOrder,
    RenewalOrderStatus,
    RenewalSettings,
)
from shared import topics
from shared.events import (
    AutoRenewalPaused,
    LineAlertRaised,
    OrderCompleted,
    OrderExpired,
    OrderPaymentFailed,
    OrderPlaced,
    OrderRefunded,
    OrderRejected,
    OrdersEvent,
    PlaceOrder,
    order_id_for,
)
from shared.kafka import Outgoing
from shared.outbox import stage

log = logging.getLogger(__name__)

RENEWAL_PREFIX: Final = "autorenew:"
PLACE_BATCH: Final = 20

# --- the decisions (pure) -------------------------------------------------------------


def renewal_request_id(iccid: str, cycle_order_id: uuid.UUID, alert: str, attempt: int) -> str:
    """One request per attempt per crossing: the line, the cycle that crossed, the threshold."""
    return f"{RENEWAL_PREFIX}{iccid}:{cycle_order_id}:{alert}:{attempt}"


def is_renewal(request_id: str) -> bool:
    return request_id.startswith(RENEWAL_PREFIX)


@dataclass(frozen=True)
class Renewed:
    """The renewal order completed: the line was topped up."""


@dataclass(frozen=True)
class RetryLater:
    """The order failed; attempt `attempt` is placed at `due_at`."""

    reason: str
    message: str
    attempt: int
    due_at: datetime


@dataclass(frozen=True)
class Pause:
    """The order failed and trying again would not help (or the bound is reached)."""

    reason: str  # AutoRenewalPaused.reason: order_rejected | retries_exhausted
    message: str
    failure_reason: str  # what failed this order, kept on its row
    failure_message: str


Decision = Renewed | RetryLater | Pause


def decide(
    event: OrdersEvent, attempt: int, policy: RenewalPolicy, now: datetime
) -> Decision | None:
    """What the outcome of renewal order `attempt` leads to; None for an event that
    settles nothing (OrderPlaced: the order is under way)."""
    if isinstance(event, OrderCompleted):
        return Renewed()
    if isinstance(event, OrderRejected) and event.reason == "request_id_reused":
        return None  # someone reused the renewal's request id: the order itself goes on
    if isinstance(event, OrderRejected):
        # A rejection (an unknown package, a malformed address...) is the same every time.
        return Pause(
            reason="order_rejected",
            message=f"the renewal order was rejected ({event.reason}): {event.message}",
            failure_reason=event.reason,
            failure_message=event.message,
        )
    failure = _failure(event)
    if failure is None:
        return None
    reason, message = failure
    if attempt < policy.max_attempts:
        due_at = now + timedelta(seconds=policy.retry_delay_s)
        return RetryLater(reason, message, attempt + 1, due_at)
    return Pause(
        reason="retries_exhausted",
        message=f"{attempt} renewal orders failed; the last: {reason}: {message}",
        failure_reason=reason,
        failure_message=message,
    )


def _failure(event: OrdersEvent) -> tuple[str, str] | None:
    if isinstance(event, OrderPaymentFailed):
        return event.reason, event.message
    if isinstance(event, OrderExpired):
        return "payment_expired", "the payment was not confirmed in time"
    if isinstance(event, OrderRefunded):
        return event.reason, "the line could not be topped up; the payment was refunded"
    return None


def place_order(
    iccid: str, settings: RenewalSettings, request_id: str, now: datetime
) -> PlaceOrder:
    """The renewal order, placed with the line's saved settings."""
    return PlaceOrder(
        request_id=request_id,
        order_id=order_id_for(request_id),
        iccid=iccid,
        occurred_at=now,
        package_id=settings.package_id,
        currency=settings.currency,
        payment_method=settings.payment_method,
        payment_token=settings.payment_token,
        msisdn=settings.msisdn,
        email=settings.email,
    )


# --- the steps ------------------------------------------------------------------------


async def on_alerts_raised(
    session: AsyncSession, provisioner: Provisioner, raised: list[LineAlertRaised], now: datetime
) -> list[Outgoing]:
    """In the caller's transaction (the one recording the alerts): the renewal orders the
    raised alerts ask for, to be staged by the caller. A line renews on its chosen
    threshold only, while its auto-renewal is active; once per cycle and threshold
    (the request_id's row decides)."""
    outgoing: list[Outgoing] = []
    for alert in raised:
        found = await rdb.find_auto_renewal(session, alert.iccid)
        if found is None or found.settings.alert != alert.alert:
            continue
        if found.status is not AutoRenewalStatus.ACTIVE:
            log.info("line %s crossed %s; auto-renewal is %s", alert.iccid, alert.alert,
                     found.status)  # fmt: skip
            continue
        request_id = renewal_request_id(alert.iccid, alert.order_id, alert.alert, 1)
        order = place_order(alert.iccid, found.settings, request_id, now)
        created = await rdb.insert_renewal_order(
            session, request_id=request_id, order_id=order.order_id, iccid=alert.iccid,
            cycle_order_id=alert.order_id, alert=alert.alert, attempt=1,
            status=RenewalOrderStatus.PLACED, now=now,
        )  # fmt: skip
        if created:
            log.info("line %s crossed %s: renewal order %s placed", alert.iccid, alert.alert,
                     order.order_id)  # fmt: skip
            outgoing.append((topics.ORDERS_COMMANDS, order))
    return outgoing


async def on_order_event(
    sessions: async_sessionmaker[AsyncSession], provisioner: Provisioner, event: OrdersEvent
) -> None:
    """Settle the renewal order an order event is about; other orders' events are skipped
    before touching the database. The row's status is the guard: a redelivered event
    finds it settled already and changes nothing."""
    if not concerns_a_renewal(event):
        return
    async with sessions.begin() as session:
        await stage(session, await settle_renewal(session, provisioner, event))


def concerns_a_renewal(event: OrdersEvent) -> bool:
    # OrderPlaced: the renewal order is under way, as its row says already.
    return is_renewal(event.request_id) and not isinstance(event, OrderPlaced)


async def settle_renewal(
    session: AsyncSession, provisioner: Provisioner, event: OrdersEvent
) -> list[Outgoing]:
    """`on_order_event` in `session`'s transaction (a consumer's batch, or its own); a
    session that runs no statement for another order's event never takes a connection."""
    if not concerns_a_renewal(event):
        return []
    now = provisioner.clock()
    renewal = await rdb.find_renewal_order(session, event.request_id, lock=True)
    if renewal is None:
        log.warning("%s for unknown renewal order %s ignored", event.type, event.request_id)
        return []
    decision = decide(event, renewal.attempt, provisioner.renewal, now)
    return [] if decision is None else await _settle(session, renewal, decision, now)


async def _settle(
    session: AsyncSession, renewal: RenewalOrder, decision: Decision, now: datetime
) -> list[Outgoing]:
    placed = RenewalOrderStatus.PLACED
    if isinstance(decision, Renewed):
        moved = await rdb.move_renewal_order(
            session, renewal.request_id, was=placed, to=RenewalOrderStatus.COMPLETED, now=now
        )
        _log_settled(renewal, moved, "completed")
        return []
    reason = decision.reason if isinstance(decision, RetryLater) else decision.failure_reason
    message = decision.message if isinstance(decision, RetryLater) else decision.failure_message
    moved = await rdb.move_renewal_order(
        session, renewal.request_id, was=placed, to=RenewalOrderStatus.FAILED, now=now,
        reason=reason, message=message,
    )  # fmt: skip
    _log_settled(renewal, moved, f"failed ({reason})")
    if not moved:
        return []
    if isinstance(decision, RetryLater):
        await _schedule_retry(session, renewal, decision, now)
        return []
    return await _pause(session, renewal, decision, now)


def _log_settled(renewal: RenewalOrder, moved: bool, how: str) -> None:
    if moved:
        log.info("renewal order %s of line %s %s", renewal.request_id, renewal.iccid, how)
    else:
        log.info("renewal order %s is %s already; event ignored", renewal.request_id,
                 renewal.status)  # fmt: skip


async def _schedule_retry(
    session: AsyncSession, renewal: RenewalOrder, retry: RetryLater, now: datetime
) -> None:
    current = await rdb.find_auto_renewal(session, renewal.iccid, lock=True)
    if current is None or current.status is not AutoRenewalStatus.ACTIVE:
        log.info("line %s: auto-renewal %s; no retry", renewal.iccid,
                 "gone" if current is None else current.status)  # fmt: skip
        return
    request_id = renewal_request_id(
        renewal.iccid, renewal.cycle_order_id, renewal.alert, retry.attempt
    )
    await rdb.insert_renewal_order(
        session, request_id=request_id, order_id=order_id_for(request_id), iccid=renewal.iccid,
        cycle_order_id=renewal.cycle_order_id, alert=renewal.alert, attempt=retry.attempt,
        status=RenewalOrderStatus.DUE, now=now, due_at=retry.due_at,
    )  # fmt: skip
    log.info("line %s: renewal attempt %d due at %s", renewal.iccid, retry.attempt,
             retry.due_at.isoformat())  # fmt: skip


async def _pause(
    session: AsyncSession, renewal: RenewalOrder, pause: Pause, now: datetime
) -> list[Outgoing]:
    if not await rdb.pause(session, renewal.iccid, pause.reason, pause.message, now):
        log.info("line %s: auto-renewal not active; not paused", renewal.iccid)
        return []
    log.warning("line %s: auto-renewal paused (%s): %s", renewal.iccid, pause.reason,
                pause.message)  # fmt: skip
    paused = AutoRenewalPaused(
        order_id=renewal.order_id,
        iccid=renewal.iccid,
        occurred_at=now,
        reason=pause.reason,
        message=pause.message,
        attempts=renewal.attempt,
        alert=renewal.alert,
    )
    return [(topics.PROVISIONING_LINE_EVENTS, paused)]


async def place_due(sessions: async_sessionmaker[AsyncSession], provisioner: Provisioner) -> int:
    """Place the renewal retries whose time has come (one batch); how many were placed.
    A retry is dropped (cancelled) if the line opted out or was paused meanwhile, or if
    a top-up started a new package cycle since: the crossing it renews is behind it."""
    now = provisioner.clock()
    async with sessions.begin() as session:
        outgoing: list[Outgoing] = []
        for renewal in await rdb.claim_due_renewals(session, now, PLACE_BATCH):
            found = await rdb.find_auto_renewal(session, renewal.iccid)
            cycle = await rdb.current_cycle(session, renewal.iccid)
            why_not = _why_not_place(found, cycle, renewal)
            if found is None or why_not is not None:
                await rdb.move_renewal_order(
                    session, renewal.request_id, was=RenewalOrderStatus.DUE,
                    to=RenewalOrderStatus.CANCELLED, now=now, reason=why_not,
                    message="the retry was not placed",
                )  # fmt: skip
                log.info("renewal %s not placed: %s", renewal.request_id, why_not)
                continue
            await rdb.move_renewal_order(
                session, renewal.request_id, was=RenewalOrderStatus.DUE,
                to=RenewalOrderStatus.PLACED, now=now,
            )  # fmt: skip
            order = place_order(renewal.iccid, found.settings, renewal.request_id, now)
            outgoing.append((topics.ORDERS_COMMANDS, order))
            log.info("renewal attempt %d of line %s placed: order %s", renewal.attempt,
                     renewal.iccid, order.order_id)  # fmt: skip
        await stage(session, outgoing)
    return len(outgoing)


def _why_not_place(
    found: rdb.AutoRenewal | None, cycle: uuid.UUID | None, renewal: RenewalOrder
) -> str | None:
    """Why a due retry is no longer wanted; None when it is."""
    if found is None or found.status is AutoRenewalStatus.OFF:
        return "opted_out"
    if found.status is AutoRenewalStatus.PAUSED:
        return "paused"
    if cycle != renewal.cycle_order_id:
        return "superseded"
    return None
