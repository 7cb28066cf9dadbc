"""Payments' logic: a payment's state machine (states.py), driven by the commands
and by the provider's answers.

A provider call never happens inside a transaction: a first transaction records
the intent (deduplicated by the idempotency key), the call follows, a second
transaction records the answer. A crash in between leaves an open row that the
settler asks the provider about, under the same key. Every function returns the
messages to publish once its transactions have committed. A consumer waits for the
call's answer OUTSIDE_PATIENCE_S at most: a slower answer is recorded when it comes, by a
task of its own, and the consumer goes on (shared/late_answers.py).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, assert_never

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.payments.backoff import Backoff
from services.payments.db import (
    Payment,
    Refund,
    charge_key_for,
    get_payment,
    get_payments,
    get_refund,
    payment_key_by_reference,
    payments,
    refunds,
    stripe_events,
    update_payment,
)
from services.payments.provider import (
    PaymentProvider,
    ProviderResult,
    ProviderStatus,
    ProviderTimeout,
    ProviderUnavailable,
)
from services.payments.states import OPEN, PaymentStatus, can_transition
from shared import topics
from shared.audit import audited
from shared.card_numbers import holds_card_number, storable
from shared.db import insert_new, insert_once
from shared.dead_letters import BusinessRuleViolation
from shared.events import (
    CancelPayment,
    ChargePayment,
    Message,
    PaymentCancelled,
    PaymentCaptured,
    PaymentDeclined,
    PaymentPending,
    PaymentRefunded,
    RefundPayment,
)
from shared.grouped_records import grouped
from shared.kafka import Outgoing
from shared.late_answers import INLINE, LateAnswers, OutsideCall
from shared.metrics import REFUNDS
from shared.outbox import stage, staged
from shared.progress import PROGRESS

log = logging.getLogger(__name__)

SessionFactory = async_sessionmaker[AsyncSession]

# An answer's event id is derived from its key and type: repeating an answer
# repeats the very same message, which consumers deduplicate.
ANSWER_NAMESPACE: Final = uuid.UUID("0b8f3f4e-5c1d-4d59-9a43-6a7c2e1f9d10")
# Who changed a payment through a webhook, in the audit log.
PROVIDER_CALLER: Final = "stripe"
PROVIDER: Final = "the payment provider"  # its name in /health


@dataclass(frozen=True)
class Unanswered:
    """A call without an answer: it may have acted (`maybe_acted`: a timeout), or surely
    did not (the provider was unreachable or rate limited); not before `retry_after_s`."""

    maybe_acted: bool
    retry_after_s: float | None = None


Answer = ProviderResult | Unanswered
Recorder = Callable[[Answer], Coroutine[Any, Any, list[Outgoing]]]


class PaymentChanged(Exception):
    """Another worker moved the payment between this one's read and write: the
    transaction rolls back and the command, redelivered, is handled afresh."""


_STATUS_AFTER: Final[dict[ProviderStatus, PaymentStatus]] = {
    "pending": PaymentStatus.PENDING,
    "captured": PaymentStatus.CAPTURED,
    "declined": PaymentStatus.DECLINED,
    "cancelled": PaymentStatus.CANCELLED,
}


Intent = tuple[list[Outgoing], OutsideCall[Answer, Outgoing] | None]
"""What a command does in its first transaction: the messages to stage now, and the
call to the provider to make after the commit (None: the answer is known already)."""

Command = ChargePayment | CancelPayment | RefundPayment


def key_of(command: Command) -> str:
    """The payment a command is about: its charge's idempotency key."""
    if isinstance(command, RefundPayment):
        return charge_key_for(command.order_id)
    return command.idempotency_key


async def handle(
    sessions: SessionFactory,
    provider: PaymentProvider,
    backoff: Backoff,
    command: Command,
    late: LateAnswers = INLINE,
) -> list[Outgoing]:
    """`late`: how long the provider's answer is waited for before the command is left
    to finish on its own (shared/late_answers.py); by default, in full. The call still
    out about the same payment, if any, is waited for first."""
    await late.settled(key_of(command))
    async with sessions.begin() as session:
        outgoing, call = await intend(session, sessions, provider, backoff, command)
        await stage(session, outgoing)
    return outgoing if call is None else await call.made(late)


async def intend(
    session: AsyncSession,
    sessions: SessionFactory,
    provider: PaymentProvider,
    backoff: Backoff,
    command: Command,
) -> Intent:
    """The command's first transaction (`session`'s), in a consumer's batch or alone."""
    match command:
        case ChargePayment():
            return await charge_intent(session, sessions, provider, backoff, command)
        case CancelPayment():
            return await cancel_intent(session, sessions, provider, backoff, command)
        case RefundPayment():
            return await refund_intent(session, sessions, provider, backoff, command)
    assert_never(command)


# The names the settler's tests and tools call a command by: one function handles each.
charge = cancel = refund = handle


# A batch's charges, recorded in one statement before its steps (`record_charges`):
# (inserted now?, the row if its answer is known already) by key, in the session.
RECORDED: Final = "payments.charges_recorded"


async def record_charges(session: AsyncSession, backoff: Backoff, commands: list[Any]) -> None:
    """Record every charge among `commands` under its idempotency key in one statement,
    and read back in one more those whose answer is known already: a repeat's, or a
    refusal's (`charge_intent` takes its own from the session)."""
    now = _now()
    charges = {c.idempotency_key: c for c in commands if isinstance(c, ChargePayment)}
    if not charges:
        return
    refusals = {key: _refusal(command) for key, command in charges.items()}
    rows = [_new_payment(c, refusals[key], backoff, now) for key, c in charges.items()]
    created = await insert_new(session, payments, rows)
    known = [key for key in charges if key not in created or refusals[key]]
    found = await get_payments(session, known) if known else {}
    recorded = session.info.setdefault(RECORDED, {})
    for key in charges:
        recorded[key] = (key in created, found.get(key))


def _new_payment(
    command: ChargePayment, refusal: dict[str, Any] | None, backoff: Backoff, now: datetime
) -> dict[str, Any]:
    return {
        "idempotency_key": command.idempotency_key,
        "order_id": command.order_id,
        "iccid": command.iccid,
        "amount_minor": command.amount.amount_minor,
        "currency": command.amount.currency,
        "fee_minor": command.fee.amount_minor,
        "payment_method": command.payment_method,
        "payment_token": storable(command.payment_token),
        "attempts": 0 if refusal else 1,
        "created_at": now,
        "updated_at": now,
        # Every row of a batch's INSERT has the same columns (shared/db.py insert_new).
        "decline_reason": None,
        "decline_message": None,
        **(refusal or {"status": PaymentStatus.NEW, "next_check_at": backoff.grace(now)}),
    }


async def charge_intent(
    session: AsyncSession,
    sessions: SessionFactory,
    provider: PaymentProvider,
    backoff: Backoff,
    command: ChargePayment,
) -> Intent:
    """Charge once per idempotency key; a repeated command gets the first answer again."""
    key = command.idempotency_key
    if key not in session.info.get(RECORDED, {}):
        await record_charges(session, backoff, [command])
    created, known = session.info[RECORDED].pop(key)
    assert created or known is not None, "inserted now, or found as it was"
    if known is not None:  # a repeat, or refused without asking the provider
        if not created:
            log.info("payment %s is %s already; answering again", key, known.status)
        return charge_answer(known), None
    amount, fee, method, token = (
        command.amount, command.fee, command.payment_method, command.payment_token
    )  # fmt: skip
    return [], OutsideCall(
        key,
        lambda: _ask(provider.charge(key, amount, fee, method, token)),
        charge_recorder(sessions, key, backoff),
    )


async def cancel_intent(
    session: AsyncSession,
    sessions: SessionFactory,
    provider: PaymentProvider,
    backoff: Backoff,
    command: CancelPayment,
) -> Intent:
    """Stop waiting for a charge; one the provider captured after all is reported as such."""
    key = command.idempotency_key
    payment = await get_payment(session, key, lock=True)
    if payment is None:
        log.warning("cancel of unknown payment %s: nothing was charged", key)
        cancelled = PaymentCancelled(
            **_envelope(key, command, "PaymentCancelled"), reason=command.reason
        )
        return [(topics.PAYMENTS_EVENTS, cancelled)], None
    if payment.status not in OPEN:
        return charge_answer(payment), None
    # Recorded before the call: if it times out, the settler goes on cancelling.
    asked = await update_payment(
        session,
        payment,
        cancel_reason=command.reason,
        attempts=payment.attempts + 1,
        next_check_at=backoff.grace(_now()),
    )
    if asked is None:
        raise PaymentChanged(key)
    reference = payment.provider_reference
    return [], OutsideCall(
        key,
        lambda: _ask(cancel_at_provider(provider, key, reference)),
        charge_recorder(sessions, key, backoff),
    )


async def refund_intent(
    session: AsyncSession,
    sessions: SessionFactory,
    provider: PaymentProvider,
    backoff: Backoff,
    command: RefundPayment,
) -> Intent:
    """Refund a captured charge once, in full, fee included; a repeat gets the same answer."""
    charge_key = charge_key_for(command.order_id)
    payment = await get_payment(session, charge_key, lock=True)
    problem = _refund_problem(payment, command)
    if payment is None or problem:
        # Refused, and dead-lettered (not dropped): an operator must look at it.
        raise BusinessRuleViolation(f"refund {command.idempotency_key} refused: {problem}")
    now = _now()
    created = await insert_once(
        session,
        insert(refunds).values(
            idempotency_key=command.idempotency_key,
            charge_key=charge_key,
            amount_minor=command.amount.amount_minor,
            currency=command.amount.currency,
            created_at=now,
        ),
    )
    if not created:
        log.info("payment %s is %s already; answering again", charge_key, payment.status)
        return refund_answer(payment, await get_refund(session, charge_key)), None
    asked = await update_payment(
        session,
        payment,
        status=PaymentStatus.REFUND_PENDING,
        attempts=1,
        next_check_at=backoff.grace(now),
    )
    if asked is None:
        raise PaymentChanged(charge_key)
    reference = payment.provider_reference
    assert reference is not None, "a captured charge has the provider's reference"
    refund_key, amount = command.idempotency_key, command.amount
    return [], OutsideCall(
        charge_key,
        lambda: _ask(provider.refund(refund_key, reference, amount)),
        refund_recorder(sessions, charge_key, backoff),
    )


async def settle_charge(
    sessions: SessionFactory, provider: PaymentProvider, backoff: Backoff, payment: Payment
) -> list[Outgoing]:
    """Ask about an open charge: cancel it if a cancel was asked for, else its status."""
    if payment.cancel_reason is not None:
        result = await _ask(cancel_at_provider(provider, payment.key, payment.provider_reference))
    else:
        result = await _ask(_status_or_charge(provider, payment))
    return await charge_recorder(sessions, payment.key, backoff)(result)


async def settle_refund(
    sessions: SessionFactory, provider: PaymentProvider, backoff: Backoff, payment: Payment
) -> list[Outgoing]:
    async with sessions() as session:
        refund = await get_refund(session, payment.key)
    assert refund is not None, "inserted with the move to REFUND_PENDING"
    result = await _ask(_refund_status_or_refund(provider, refund, payment))
    return await refund_recorder(sessions, payment.key, backoff)(result)


def charge_recorder(sessions: SessionFactory, key: str, backoff: Backoff) -> Recorder:
    """Records a charge's answer (of a call, a settling question), with the messages it
    calls for, in a transaction with the answers that came meanwhile (grouped_records.py)."""

    async def record(answer: Answer) -> list[Outgoing]:
        return await grouped(sessions).record(
            lambda session: record_charge_answer(session, key, answer, backoff)
        )

    return record


def refund_recorder(sessions: SessionFactory, charge_key: str, backoff: Backoff) -> Recorder:
    """Records a refund's answer, as `charge_recorder` a charge's."""

    async def record(answer: Answer) -> list[Outgoing]:
        return await grouped(sessions).record(
            lambda session: record_refund_answer(session, charge_key, answer, backoff)
        )

    return record


async def cancel_at_provider(
    provider: PaymentProvider, key: str, reference: str | None
) -> ProviderResult:
    result = await provider.cancel(key, reference)
    # A charge the provider never received took nothing: as good as cancelled.
    return ProviderResult("cancelled") if result.status == "not_found" else result


async def record_charge_answer(
    session: AsyncSession, key: str, answer: Answer, backoff: Backoff
) -> list[Outgoing]:
    """Move the payment as the provider's answer says (its call, or a webhook's event)."""
    payment = await get_payment(session, key, lock=True)
    assert payment is not None, "answers are recorded for payments that exist"
    result = answer if isinstance(answer, ProviderResult) else None
    target = _STATUS_AFTER.get(result.status) if result is not None else None
    if target is None or target is payment.status:
        if result is not None and target is None:
            log.warning("provider answered %s about charge %s", result.status, key)
        if payment.status in OPEN:
            # Still open: ask again later; a charge whose call may have acted is UNKNOWN.
            maybe_acted = isinstance(answer, Unanswered) and answer.maybe_acted
            unknown = payment.status is PaymentStatus.NEW and maybe_acted
            await update_payment(
                session,
                payment,
                status=PaymentStatus.UNKNOWN if unknown else payment.status,
                next_check_at=_next_check(backoff, payment, answer),
                **_next_action_of(result),
            )
        return []
    if not can_transition(payment.status, target):
        log.info("payment %s is %s; provider's %s ignored", key, payment.status, target)
        return []
    assert result is not None
    settled = target not in OPEN
    declined = target is PaymentStatus.DECLINED
    updated = await update_payment(
        session,
        payment,
        status=target,
        provider_reference=result.provider_reference or payment.provider_reference,
        decline_reason=result.reason if declined else None,
        decline_message=result.message if declined else None,
        next_check_at=None if settled else _next_check(backoff, payment, answer),
        **_next_action_of(result),
    )
    if updated is None:
        log.info("payment %s moved meanwhile; the answer %s is left to its mover", key, target)
        return []
    log.info("payment %s: %s -> %s", key, payment.status, target)
    return charge_answer(updated)


async def record_refund_answer(
    session: AsyncSession, charge_key: str, answer: Answer, backoff: Backoff
) -> list[Outgoing]:
    payment = await get_payment(session, charge_key, lock=True)
    assert payment is not None, "answers are recorded for payments that exist"
    if payment.status is not PaymentStatus.REFUND_PENDING:
        log.info("payment %s is %s; refund answer ignored", charge_key, payment.status)
        return []
    result = answer if isinstance(answer, ProviderResult) else None
    if result is None or result.status != "refunded":
        if result is not None:
            # No event says a refund failed: the row stays REFUND_PENDING, is asked
            # about again and again (at most every SETTLE_BACKOFF_MAX_S) and shouts.
            log.error(
                "provider answered %s (%s) to the refund of %s; asking again later",
                result.status,
                result.reason,
                charge_key,
            )
        await update_payment(session, payment, next_check_at=_next_check(backoff, payment, answer))
        return []
    updated = await update_payment(
        session, payment, status=PaymentStatus.REFUNDED, next_check_at=None
    )
    if updated is None:
        log.info("payment %s moved meanwhile; its refund is left to its mover", charge_key)
        return []
    REFUNDS.labels("refunded").inc()
    await session.execute(
        update(refunds)
        .where(refunds.c.charge_key == charge_key)
        .values(provider_reference=result.provider_reference, refunded_at=_now())
    )
    log.info("payment %s refunded", charge_key)
    return refund_answer(updated, await get_refund(session, charge_key))


@dataclass(frozen=True)
class ProviderEvent:
    """What the provider told us on its own (a webhook): about a charge, or its refund."""

    event_id: str
    kind: str
    key: str | None  # our idempotency key, from the provider's metadata
    reference: str | None  # the provider's id of the charge
    result: ProviderResult
    about_refund: bool = False


async def record_provider_event(
    sessions: SessionFactory, backoff: Backoff, event: ProviderEvent
) -> bool:
    """Act on the event once, as on a call's answer; False when it changed nothing
    (seen before, or about a payment that is not ours)."""
    async with sessions.begin() as session:
        first = await insert_once(
            session,
            insert(stripe_events).values(
                event_id=event.event_id, type=event.kind, received_at=_now()
            ),
        )
        if not first:
            log.info("provider event %s seen already; nothing to do", event.event_id)
            return False
        key = await _payment_key(session, event)
        if key is None:
            log.info("provider event %s is about no payment of ours", event.event_id)
            return False
        record = record_refund_answer if event.about_refund else record_charge_answer
        outgoing = await record(session, key, event.result, backoff)
        if outgoing:
            detail = {"event": event.event_id, "type": event.kind}
            await audited(session, PROVIDER_CALLER, f"payment {event.result.status}", key, detail)
        await staged(session, outgoing)
        return bool(outgoing)


async def _payment_key(session: AsyncSession, event: ProviderEvent) -> str | None:
    """The payment the event is about: by the key in its metadata, or by its intent's id.
    An intent that is not the one the payment knows (a second intent under a key Stripe
    had forgotten, say) does not move the payment."""
    payment = await get_payment(session, event.key) if event.key is not None else None
    if payment is None:
        if event.reference is None:
            return None
        return await payment_key_by_reference(session, event.reference)
    known = payment.provider_reference
    if known and event.reference != known:
        log.warning(
            "provider event %s is about intent %s, payment %s knows %s: ignored",
            event.event_id, event.reference, payment.key, known,
        )  # fmt: skip
        return None
    return payment.key


def charge_answer(payment: Payment) -> list[Outgoing]:
    """The charge's answer as it stands; nothing while its outcome is unknown."""
    message: Message
    match payment.status:
        case PaymentStatus.PENDING:
            message = PaymentPending(
                **_envelope(payment.key, payment, "PaymentPending"),
                provider_reference=payment.provider_reference or "",
                next_action=payment.next_action,
            )
        case PaymentStatus.CAPTURED | PaymentStatus.REFUND_PENDING | PaymentStatus.REFUNDED:
            message = PaymentCaptured(
                **_envelope(payment.key, payment, "PaymentCaptured"),
                amount=payment.amount,
                fee=payment.fee,
                provider_reference=payment.provider_reference or "",
            )
        case PaymentStatus.DECLINED:
            message = PaymentDeclined(
                **_envelope(payment.key, payment, "PaymentDeclined"),
                reason=payment.decline_reason or "provider_declined",
                message=payment.decline_message or "",
            )
        case PaymentStatus.CANCELLED:
            message = PaymentCancelled(
                **_envelope(payment.key, payment, "PaymentCancelled"),
                reason=payment.cancel_reason or "cancelled",
            )
        case PaymentStatus.NEW | PaymentStatus.UNKNOWN:
            return []
    return [(topics.PAYMENTS_EVENTS, message)]


def refund_answer(payment: Payment, refund: Refund | None) -> list[Outgoing]:
    """PaymentRefunded once the provider confirmed it; nothing while it is pending."""
    if payment.status is not PaymentStatus.REFUNDED or refund is None:
        return []
    refunded = PaymentRefunded(
        **_envelope(refund.key, payment, "PaymentRefunded"),
        amount=refund.amount,
        provider_reference=refund.provider_reference or "",
    )
    return [(topics.PAYMENTS_EVENTS, refunded)]


async def _ask(call: Awaitable[ProviderResult]) -> Answer:
    """The provider's answer, or why there is none."""
    try:
        answer = await call
    except ProviderTimeout as timeout:
        log.warning("provider did not answer in time: %s", timeout)
        PROGRESS.outside_failed(PROVIDER, timeout)
        return Unanswered(maybe_acted=True)
    except ProviderUnavailable as unavailable:
        log.warning("provider unavailable: %s", unavailable)
        PROGRESS.outside_failed(PROVIDER, unavailable)
        return Unanswered(maybe_acted=False, retry_after_s=unavailable.retry_after_s)
    PROGRESS.outside_answered(PROVIDER)  # /health: the provider answers
    return answer


def _next_check(backoff: Backoff, payment: Payment, answer: Answer) -> datetime:
    """The backoff's next check, and never before the provider's Retry-After."""
    now = _now()
    later = backoff.after(payment.attempts, now)
    if isinstance(answer, Unanswered) and answer.retry_after_s:
        return max(later, now + timedelta(seconds=answer.retry_after_s))
    return later


def _next_action_of(result: ProviderResult | None) -> dict[str, Any]:
    """The customer's next step, kept with the payment while it is pending."""
    if result is None or result.next_action is None:
        return {}
    return {"next_action": result.next_action.model_dump(mode="json")}


async def _status_or_charge(provider: PaymentProvider, payment: Payment) -> ProviderResult:
    result = await provider.status(payment.key, payment.provider_reference)
    if result.status != "not_found":
        return result
    # Only a provider that never saw the charge is sent it again, under the same key.
    log.info("provider never received charge %s; sending it again", payment.key)
    return await provider.charge(
        payment.key, payment.amount, payment.fee, payment.method, payment.token
    )


async def _refund_status_or_refund(
    provider: PaymentProvider, refund: Refund, payment: Payment
) -> ProviderResult:
    reference = payment.provider_reference
    assert reference is not None, "a captured charge has the provider's reference"
    result = await provider.refund_status(refund.key, reference)
    if result.status != "not_found":
        return result
    log.info("provider never received refund %s; sending it again", refund.key)
    return await provider.refund(refund.key, reference, refund.amount)


def _refusal(command: ChargePayment) -> dict[str, Any] | None:
    """Why the charge is declined without asking the provider, as the row's values."""
    if holds_card_number(command.payment_token):
        reason, message = "card_number_not_accepted", "Payments take provider tokens only."
    elif command.fee.currency != command.amount.currency:
        reason, message = "invalid_amount", "The fee is not in the charge's currency."
    elif command.fee.amount_minor > command.amount.amount_minor:
        reason, message = "invalid_amount", "The fee is more than the whole charge."
    else:
        return None
    return {
        "status": PaymentStatus.DECLINED,
        "decline_reason": reason,
        "decline_message": message,
        "next_check_at": None,
    }


def _refund_problem(payment: Payment | None, command: RefundPayment) -> str | None:
    if payment is None:
        return "no charge for the order"
    if payment.status not in {
        PaymentStatus.CAPTURED,
        PaymentStatus.REFUND_PENDING,
        PaymentStatus.REFUNDED,
    }:
        return f"the charge is {payment.status}, not captured"
    if command.amount != payment.amount:
        return f"{command.amount} asked, {payment.amount} charged (fee included)"
    return None


def _envelope(key: str, about: Payment | Message, kind: str) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid5(ANSWER_NAMESPACE, f"{key}:{kind}"),
        "order_id": about.order_id,
        "iccid": about.iccid,
    }


def _now() -> datetime:
    return datetime.now(UTC)
