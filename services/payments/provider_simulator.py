"""A stand-in for the payment provider that is honest about the outside world.

It is slow (a jittered latency), it declines, asynchronous methods (Alipay, WeChat
Pay) answer `pending` and confirm later, and a call can time out *after* the
simulator acted, so the caller cannot know what happened. Like a real provider it
honours idempotency keys (the same key always gets the first result, nothing is
charged twice) and keeps its ledger in tables of its own, written in transactions
of its own, so the ledger survives a restart of the payments process.

The payment token decides what happens, so tests can ask for each case:

| token starts with     | outcome                                                  |
| --------------------- | -------------------------------------------------------- |
| `tok_decline`         | declined, insufficient_funds                             |
| `tok_expired`         | declined, card_expired                                   |
| `tok_pending_forever` | pending until cancelled                                  |
| `tok_timeout`         | the first charge call times out (the charge went through) |
| `tok_refund_timeout`  | captured; the first refund call times out (it went through) |
| 13-19 digits          | declined, card_number_not_accepted; only a masked form kept |
| anything else         | captured, or pending for alipay and wechat_pay            |

Beyond those, `decline_rate` and `timeout_rate` add random declines and timeouts.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.payments.provider import ProviderResult, ProviderStatus, ProviderTimeout
from shared.card_numbers import holds_card_number, storable
from shared.db import as_utc, create_schema, insert_once, sessions_for
from shared.events import Money, PaymentMethod

ASYNCHRONOUS_METHODS: Final = frozenset({"alipay", "wechat_pay"})

# Its own metadata: these tables stand for the provider's systems, not payments' own.
provider_metadata = MetaData()

simulated_charges = Table(
    "simulated_provider_charges",
    provider_metadata,
    Column("idempotency_key", String(80), primary_key=True),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("fee_minor", BigInteger, nullable=False),
    Column("payment_method", String(16), nullable=False),
    Column("token_on_file", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", String(64)),
    Column("message", String(255)),
    Column("provider_reference", String(64), nullable=False, unique=True),
    # When a pending asynchronous payment confirms; NULL while it never will.
    Column("confirm_at", DateTime(timezone=True)),
    # Every charge call under the key, replays included: shows nothing was charged twice.
    Column("charge_calls", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

simulated_refunds = Table(
    "simulated_provider_refunds",
    provider_metadata,
    Column("idempotency_key", String(80), primary_key=True),
    Column("charge_key", String(80), nullable=False, index=True),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", String(64)),
    Column("message", String(255)),
    Column("provider_reference", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

_DECLINES_BY_TOKEN: Final = (
    ("tok_decline", "insufficient_funds", "The card has insufficient funds."),
    ("tok_expired", "card_expired", "The card has expired."),
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ProviderSimulator:
    """A `PaymentProvider` whose ledger lives in the database behind `engine`."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        latency_ms: int = 0,
        decline_rate: float = 0.0,
        timeout_rate: float = 0.0,
        confirm_after_s: float = 2.0,
        seed: int | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._engine = engine
        self._sessions = sessions_for(engine)
        self._latency_s = latency_ms / 1000
        self._decline_rate = decline_rate
        self._timeout_rate = timeout_rate
        self._confirm_after = timedelta(seconds=confirm_after_s)
        # Simulated weather, not security: a seedable generator keeps runs repeatable.
        self._random = random.Random(seed)  # noqa: S311
        self._clock = clock
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()

    async def charge(
        self, key: str, amount: Money, fee: Money, method: PaymentMethod, token: str
    ) -> ProviderResult:
        await self._travel()
        now = self._clock()
        async with self._transaction() as session:
            first = await insert_once(
                session,
                insert(simulated_charges).values(
                    idempotency_key=key,
                    amount_minor=amount.amount_minor,
                    currency=amount.currency,
                    fee_minor=fee.amount_minor,
                    payment_method=method,
                    token_on_file=storable(token),
                    provider_reference=_reference("ch"),
                    charge_calls=0,
                    created_at=now,
                    updated_at=now,
                    **self._first_outcome(method, token, now),
                ),
            )
            await session.execute(
                update(simulated_charges)
                .where(simulated_charges.c.idempotency_key == key)
                .values(charge_calls=simulated_charges.c.charge_calls + 1)
            )
            result = await self._charge_result(session, key)
        if first and token.startswith("tok_timeout"):
            raise ProviderTimeout(f"charge {key}: no answer in time")
        return self._answer(result)

    async def status(self, key: str) -> ProviderResult:
        await self._travel()
        async with self._transaction() as session:
            result = await self._charge_result(session, key)
            if result is None:
                result = await self._refund_result(session, key)
        return self._answer(result or ProviderResult("not_found"))

    async def cancel(self, key: str) -> ProviderResult:
        await self._travel()
        async with self._transaction() as session:
            result = await self._charge_result(session, key)
            if result is not None and result.status == "pending":
                await self._set_status(session, key, "cancelled", now=self._clock())
                result = await self._charge_result(session, key)
        return self._answer(result or ProviderResult("not_found"))

    async def refund(self, refund_key: str, charge_key: str, amount: Money) -> ProviderResult:
        """Refunds up to the charged amount, once per charge: a refunded charge stays so."""
        await self._travel()
        now = self._clock()
        async with self._transaction() as session:
            # Locked first, so two refunds of one charge cannot both see it captured.
            row = (
                await session.execute(
                    select(simulated_charges)
                    .where(simulated_charges.c.idempotency_key == charge_key)
                    .with_for_update()
                )
            ).first()
            charge = await self._charge_result(session, charge_key)
            outcome = _refund_outcome(charge, row, amount)
            first = await insert_once(
                session,
                insert(simulated_refunds).values(
                    idempotency_key=refund_key,
                    charge_key=charge_key,
                    amount_minor=amount.amount_minor,
                    currency=amount.currency,
                    status=outcome.status,
                    reason=outcome.reason,
                    message=outcome.message,
                    provider_reference=_reference("re"),
                    created_at=now,
                ),
            )
            if first and outcome.status == "refunded":
                await self._set_status(session, charge_key, "refunded", now=now)
            result = await self._refund_result(session, refund_key)
        if first and row is not None and row.token_on_file.startswith("tok_refund_timeout"):
            raise ProviderTimeout(f"refund {refund_key}: no answer in time")
        return self._answer(result)

    def _first_outcome(self, method: str, token: str, now: datetime) -> dict[str, Any]:
        if holds_card_number(token):
            return _declined(
                "card_number_not_accepted", "Send the provider's token, never a card number."
            )
        for prefix, reason, message in _DECLINES_BY_TOKEN:
            if token.startswith(prefix):
                return _declined(reason, message)
        if token.startswith("tok_pending_forever"):
            return {"status": "pending", "confirm_at": None}
        if self._random.random() < self._decline_rate:
            return _declined("provider_declined", "The payment was declined by the provider.")
        if method in ASYNCHRONOUS_METHODS:
            return {"status": "pending", "confirm_at": now + self._confirm_after}
        return {"status": "captured", "confirm_at": None}

    async def _charge_result(self, session: AsyncSession, key: str) -> ProviderResult | None:
        """The charge's result now: a pending payment whose time has come is confirmed."""
        row = (
            await session.execute(
                select(simulated_charges).where(simulated_charges.c.idempotency_key == key)
            )
        ).first()
        if row is None:
            return None
        now = self._clock()
        if row.status == "pending" and row.confirm_at is not None and as_utc(row.confirm_at) <= now:
            await self._set_status(session, key, "captured", now=now)
            return ProviderResult("captured", row.provider_reference)
        return ProviderResult(row.status, row.provider_reference, row.reason, row.message)

    async def _refund_result(self, session: AsyncSession, key: str) -> ProviderResult | None:
        row = (
            await session.execute(
                select(simulated_refunds).where(simulated_refunds.c.idempotency_key == key)
            )
        ).first()
        if row is None:
            return None
        return ProviderResult(row.status, row.provider_reference, row.reason, row.message)

    async def _set_status(
        self, session: AsyncSession, key: str, status: ProviderStatus, *, now: datetime
    ) -> None:
        await session.execute(
            update(simulated_charges)
            .where(simulated_charges.c.idempotency_key == key)
            .values(status=status, updated_at=now)
        )

    async def _travel(self) -> None:
        """The network and the provider's own work: a latency jittered around its mean."""
        if self._latency_s > 0:
            await asyncio.sleep(self._random.uniform(0.5, 1.5) * self._latency_s)

    def _answer(self, result: ProviderResult | None) -> ProviderResult:
        """The answer, unless it is lost on the way back: the simulator has acted by now."""
        if self._random.random() < self._timeout_rate:
            raise ProviderTimeout("no answer in time")
        assert result is not None, "a charge or refund just written is always found"
        return result

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        if not self._schema_ready:
            # The provider is simply there; its tables appear on first use.
            async with self._schema_lock:
                if not self._schema_ready:
                    await create_schema(self._engine, provider_metadata)
                    self._schema_ready = True
        async with self._sessions.begin() as session:
            yield session


def _refund_outcome(charge: ProviderResult | None, row: Any, amount: Money) -> ProviderResult:
    if charge is None or row is None:
        return ProviderResult("declined", reason="charge_not_found", message="No such charge.")
    if charge.status == "refunded":
        return ProviderResult("declined", reason="already_refunded", message="Refunded already.")
    if charge.status != "captured":
        return ProviderResult(
            "declined", reason="charge_not_captured", message="Only a captured charge is refunded."
        )
    if amount.currency != row.currency or amount.amount_minor > row.amount_minor:
        return ProviderResult(
            "declined", reason="amount_exceeds_charge", message="More than was charged."
        )
    return ProviderResult("refunded")


def _declined(reason: str, message: str) -> dict[str, Any]:
    return {"status": "declined", "reason": reason, "message": message, "confirm_at": None}


def _reference(kind: str) -> str:
    return f"sim_{kind}_{uuid.uuid4().hex[:20]}"
