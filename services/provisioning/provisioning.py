"""Topping a line up through the carrier, exactly once per order.

Each top-up goes through two transactions with the carrier call between them, so
no database transaction stays open while the outside world thinks:
1. record the request NEW under its idempotency key (a repeat stops here and gets
   the first answer again, or nothing while the first is still in progress);
2. call the carrier with that key (its package for ours: the catalog maps them);
3. record what it said: APPLIED with the balance changed in the same transaction,
   FAILED, RETRYING after a backoff, or UNKNOWN until `status(key, iccid)` settles it.
The retrier (retrier.py) takes every top-up that is due: RETRYING ones are sent
again; UNKNOWN ones, and NEW ones a crash left behind, are asked about first.

The functions return the messages to publish once their transaction has committed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orders.catalog import DEFAULT_CATALOG, load_catalog
from services.provisioning import db, usage_db
from services.provisioning.alerts import AlertRules, drawable_mb
from services.provisioning.balances import Balance, StackingRule, apply_top_up, metered_mb
from services.provisioning.carrier import Carrier, CarrierTimeout, CarrierUnavailable, Failed
from services.provisioning.db import TopUp
from services.provisioning.renewal_policy import RenewalPolicy
from services.provisioning.topup_states import (
    Outcome,
    RetryPolicy,
    TopUpStatus,
    Unavailable,
    Unknown,
    can_transition,
    decide,
)
from shared import topics
from shared.events import LineToppedUp, TopUpFailed, TopUpLine
from shared.grouped_records import grouped
from shared.kafka import Outgoing
from shared.late_answers import INLINE, LateAnswers, OutsideCall
from shared.metrics import TOPUPS
from shared.outbox import stage, staged
from shared.progress import PROGRESS

log = logging.getLogger(__name__)

PROVISIONER: Final = "provisioner"  # its name in the broker's context
CARRIER: Final = "the carrier"  # its name in /health
CLAIM_BATCH: Final = 20


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Provisioner:
    """What the flow works with besides the database: the carrier and the rules."""

    carrier: Carrier
    stacking_rule: StackingRule = StackingRule.EXTEND
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    clock: Callable[[], datetime] = _utc_now
    alerts: AlertRules = field(default_factory=AlertRules)
    renewal: RenewalPolicy = field(default_factory=RenewalPolicy)
    sweep_interval_s: float = 30.0
    catalog_path: Path = DEFAULT_CATALOG  # the carrier's package ids; what auto-renewal may be
    # How long a consumer waits for the carrier before its answer is left to come on its
    # own (shared/late_answers.py); by default, in full.
    late: LateAnswers = INLINE


def provisioner_of(broker: KafkaBroker) -> Provisioner:
    provisioner = broker.context.get(PROVISIONER)
    if not isinstance(provisioner, Provisioner):
        raise RuntimeError("the broker's context has no provisioner")
    return provisioner


async def top_up(
    sessions: async_sessionmaker[AsyncSession], provisioner: Provisioner, command: TopUpLine
) -> list[Outgoing]:
    """The first delivery of a TopUpLine calls the carrier; a repeat gets the first answer.
    The call still out about the same top-up, if any, is waited for first."""
    await provisioner.late.settled(command.idempotency_key)
    async with sessions.begin() as session:
        outgoing, call = await top_up_intent(session, sessions, provisioner, command)
        await stage(session, outgoing)
    return outgoing if call is None else await call.made(provisioner.late)


TopUpIntent = tuple[list[Outgoing], OutsideCall[Outcome, Outgoing] | None]


# A batch's top-ups, recorded in one statement before its steps (`record_top_ups`):
# (first delivery?, the row) by key, in the transaction's session.
RECORDED: Final = "provisioning.top_ups_recorded"


async def record_top_ups(
    session: AsyncSession, provisioner: Provisioner, commands: list[TopUpLine]
) -> None:
    """Record every top-up of `commands` NEW under its key, and read them all back: a
    statement per table for a batch (`top_up_intent` takes its own from the session)."""
    now = provisioner.clock()
    # Until the grace period is over the retrier leaves these calls alone.
    due_at = now + timedelta(seconds=provisioner.retry.grace_s)
    first = await db.insert_topups(session, commands, now, due_at)
    found = await db.find_topups(session, [c.idempotency_key for c in commands])
    recorded = session.info.setdefault(RECORDED, {})
    for key, topup in found.items():
        recorded[key] = (key in first, topup)


async def top_up_intent(
    session: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    provisioner: Provisioner,
    command: TopUpLine,
) -> TopUpIntent:
    """The command's first transaction (`session`'s): the top-up recorded NEW under its
    key, and the carrier call to make after the commit; a repeat's answer instead."""
    key = command.idempotency_key
    if key not in session.info.get(RECORDED, {}):
        await record_top_ups(session, provisioner, [command])
    first, topup = session.info[RECORDED].pop(key)
    if not first:
        log.info("top-up %s is %s; repeated command answered again", topup.key, topup.status)
        return answer_for(topup), None

    async def record(outcome: Outcome) -> list[Outgoing]:
        # With the answers that came meanwhile, in one transaction (grouped_records.py).
        return await grouped(sessions).record(
            lambda session: record_outcome(session, provisioner, topup.key, outcome, sent=True)
        )

    return [], OutsideCall(topup.key, lambda: send(provisioner, topup), record)


async def claim_due(
    sessions: async_sessionmaker[AsyncSession], provisioner: Provisioner
) -> list[TopUp]:
    now = provisioner.clock()
    lease_until = now + timedelta(seconds=provisioner.retry.grace_s)
    async with sessions.begin() as session:
        return await db.claim_due(session, now, lease_until, CLAIM_BATCH)


async def follow_up(
    sessions: async_sessionmaker[AsyncSession], provisioner: Provisioner, topup: TopUp
) -> list[Outgoing]:
    """One more step for a due top-up: send it again, or ask what became of it."""
    if topup.status is TopUpStatus.RETRYING:
        outcome, sent = await send(provisioner, topup), True
    else:
        # UNKNOWN, or NEW left behind: it may have been applied; never send blindly.
        outcome, sent = await ask(provisioner.carrier, topup), False
    async with sessions.begin() as session:
        answer = await record_outcome(session, provisioner, topup.key, outcome, sent=sent)
        return await staged(session, answer)


async def send(provisioner: Provisioner, topup: TopUp) -> Outcome:
    """Buy the carrier's package for our catalog package (the catalog maps them)."""
    carrier_package = carrier_package_of(provisioner.catalog_path, topup.package_id)
    if carrier_package is None:
        return Failed(
            True, "package_unknown", "the catalog maps this package to no carrier package"
        )
    try:
        answer = await provisioner.carrier.top_up(topup.key, topup.iccid, carrier_package)
    except CarrierUnavailable as exc:
        PROGRESS.outside_failed(CARRIER, exc)
        return Unavailable(f"carrier unavailable: {exc}", exc.retry_after_s)
    except CarrierTimeout as exc:
        PROGRESS.outside_failed(CARRIER, exc)
        return Unknown(f"carrier timed out: {exc}")
    PROGRESS.outside_answered(CARRIER)  # /health: the carrier answers
    return answer


async def ask(carrier: Carrier, topup: TopUp) -> Outcome:
    """What became of the key, from the line's top-ups at the carrier."""
    try:
        answer = await carrier.status(topup.key, topup.iccid)
    except (CarrierUnavailable, CarrierTimeout) as exc:
        PROGRESS.outside_failed(CARRIER, exc)
        wait = exc.retry_after_s if isinstance(exc, CarrierUnavailable) else 0.0
        return Unknown(f"carrier status not available: {exc}", wait)
    PROGRESS.outside_answered(CARRIER)
    return answer


def carrier_package_of(catalog_path: Path, package_id: str) -> str | None:
    package = load_catalog(catalog_path).packages.get(package_id)
    return None if package is None else package.carrier_package_id


async def record_outcome(
    session: AsyncSession, provisioner: Provisioner, key: str, outcome: Outcome, *, sent: bool
) -> list[Outgoing]:
    """Move the top-up on as `outcome` says; a top-up already settled stays as it is."""
    now = provisioner.clock()
    topup = await db.find_topup(session, key, lock=True)
    if topup is None:
        log.warning("outcome %r for unknown top-up %s ignored", outcome, key)
        return []
    attempts = topup.attempts + (1 if sent else 0)
    since_sent = None if topup.last_sent_at is None else now - topup.last_sent_at
    move = decide(outcome, attempts, provisioner.retry, since_sent)
    if not can_transition(topup.status, move.status):
        log.info("top-up %s is %s; %r ignored", key, topup.status, outcome)
        return []
    if move.status is TopUpStatus.APPLIED:
        moved = await _apply(session, provisioner, topup, attempts, now)
    elif move.status is TopUpStatus.FAILED:
        moved = await db.mark(
            session, topup, now, status=move.status, attempts=attempts, next_attempt_at=None,
            failure_reason=move.reason, last_error=move.message, answer_event_id=uuid.uuid4(),
            settled_at=now,
        )  # fmt: skip
        log.warning("top-up %s failed (%s): %s", key, move.reason, move.message)
    else:
        moved = await db.mark(
            session, topup, now, status=move.status, attempts=attempts,
            next_attempt_at=now + (move.retry_in or timedelta(0)), last_error=move.message,
        )  # fmt: skip
        log.warning("top-up %s %s after %d attempts: %s", key, move.status, attempts, move.message)
    if not moved:
        log.info("top-up %s moved on meanwhile; %r ignored", key, outcome)
        return []
    TOPUPS.labels(move.status.value.lower()).inc()
    settled = await db.find_topup(session, key)
    return [] if settled is None else answer_for(settled)


async def _apply(
    session: AsyncSession, provisioner: Provisioner, topup: TopUp, attempts: int, now: datetime
) -> bool:
    """Mark the top-up APPLIED, change the balance and start the line's new package cycle
    (docs/usage-alerts.md), in the caller's one transaction."""
    current = await db.locked_balance(session, topup.iccid)
    balance = apply_top_up(current, topup.package, provisioner.stacking_rule, now)
    marked = await db.mark(
        session, topup, now, status=TopUpStatus.APPLIED, attempts=attempts, next_attempt_at=None,
        last_error=None, answer_event_id=uuid.uuid4(), stacking_rule=provisioner.stacking_rule,
        valid_until=balance.valid_until, data_remaining_mb=metered_mb(balance, now),
        settled_at=now, applied_at=now,
    )  # fmt: skip
    if marked:
        await db.save_balance(session, topup.iccid, balance, now)
        quota = drawable_mb(balance, now)
        await usage_db.start_cycle(session, topup.iccid, topup.order_id, quota, now)
    return marked


def answer_for(topup: TopUp) -> list[Outgoing]:
    """The answer a settled top-up gave, the very same each time (its event id too);
    nothing while it is unsettled."""
    ids = {
        "event_id": topup.answer_event_id or uuid.uuid4(),
        "occurred_at": topup.settled_at or _utc_now(),
        "order_id": topup.order_id,
        "iccid": topup.iccid,
    }
    if topup.status is TopUpStatus.APPLIED and topup.valid_until is not None:
        done = LineToppedUp(
            **ids,
            data_mb=topup.package.data_added_mb,
            valid_until=topup.valid_until,
            data_remaining_mb=topup.data_remaining_mb,
        )
        return [(topics.PROVISIONING_EVENTS, done)]
    if topup.status is TopUpStatus.FAILED:
        failed = TopUpFailed(
            **ids,
            reason=topup.failure_reason or "failed",
            message=topup.last_error or "",
            attempts=topup.attempts,
        )
        return [(topics.PROVISIONING_EVENTS, failed)]
    return []


@dataclass(frozen=True)
class LineReport:
    balance: Balance | None  # None: never topped up
    topups: list[TopUp]


async def line_report(session: AsyncSession, iccid: str) -> LineReport | None:
    """A line's stored balance and its top-ups, oldest first; None for an unknown line."""
    if not await db.line_exists(session, iccid):
        return None
    return LineReport(await db.balance_of(session, iccid), await db.history(session, iccid))
