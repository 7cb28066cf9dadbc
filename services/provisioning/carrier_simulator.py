"""A simulated carrier, standing in for the real one until its API is wired in.

It behaves like the outside world it replaces:
- every call takes time (a mean latency, jittered +-50%);
- some calls fail transiently (`CarrierUnavailable`: nothing done);
- some time out (`CarrierTimeout`): the request was lost before it was processed,
  or it was processed (applied or refused, and recorded) and only the answer lost;
- a suspended line (`CARRIER_SUSPENDED_ICCIDS`) and an unknown line (not a well-formed
  E.118 ICCID, e.g. not starting 89) are refused for good;
- a key is applied at most once and always answered with its first result.

Its ledger is a table of its own (`simulated_carrier_topups`), written in its own
transactions and never joined with provisioning's tables, so it survives a restart
of provisioning as a real carrier's would and tests can inspect what it applied.
`behaviour` is a mutable object: a test (or a debugging session) can start or end
an outage while the service runs.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.provisioning.carrier import (
    Applied,
    CarrierTimeout,
    CarrierUnavailable,
    Failed,
    NotFound,
)
from services.provisioning.iccid import is_valid_iccid
from services.provisioning.settings import ProvisioningSettings
from shared.db import insert_once

carrier_metadata = MetaData()

simulated_carrier_topups = Table(
    "simulated_carrier_topups",
    carrier_metadata,
    Column("key", String(80), primary_key=True),
    Column("iccid", String(20), nullable=False),
    Column("data_mb", Integer, nullable=True),
    Column("validity_days", Integer, nullable=False),
    Column("outcome", String(16), nullable=False),  # applied | failed
    Column("reason", String(64), nullable=True),
    Column("message", String(200), nullable=True),
    Column("reference", String(40), nullable=True),
    Column("requests", Integer, nullable=False),  # how often this key was sent to it
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)


@dataclass
class CarrierBehaviour:
    latency_ms: float = 0.0
    transient_failure_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_applied_rate: float = 0.5
    suspended_iccids: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_settings(cls, settings: ProvisioningSettings) -> CarrierBehaviour:
        return cls(
            latency_ms=settings.carrier_latency_ms,
            transient_failure_rate=settings.carrier_transient_failure_rate,
            timeout_rate=settings.carrier_timeout_rate,
            timeout_applied_rate=settings.carrier_timeout_applied_rate,
            suspended_iccids=settings.carrier_suspended_iccids,
        )


class CarrierSimulator:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        behaviour: CarrierBehaviour,
        dice: random.Random | None = None,
    ) -> None:
        self.behaviour = behaviour
        self._sessions = sessions
        # Simulated failures need no cryptographic randomness; a seed replays a run.
        self._dice = dice or random.Random()  # noqa: S311
        self._ledger_ready = False
        self._ledger_lock = asyncio.Lock()

    async def top_up(
        self, key: str, iccid: str, data_mb: int | None, validity_days: int
    ) -> Applied | Failed:
        await self._answer_delay()
        behaviour = self.behaviour
        if self._dice.random() < behaviour.transient_failure_rate:
            raise CarrierUnavailable("carrier busy (simulated 503); nothing was done")
        times_out = self._dice.random() < behaviour.timeout_rate
        if times_out and self._dice.random() >= behaviour.timeout_applied_rate:
            raise CarrierTimeout("no answer in time (simulated: the request was lost)")
        answer = await self._process(key, iccid, data_mb, validity_days)
        if times_out:
            raise CarrierTimeout("no answer in time (simulated: processed, answer lost)")
        return answer

    async def status(self, key: str) -> Applied | Failed | NotFound:
        await self._answer_delay()
        if self._dice.random() < self.behaviour.transient_failure_rate:
            raise CarrierUnavailable("carrier busy (simulated 503)")
        await self._ensure_ledger()
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(simulated_carrier_topups).where(simulated_carrier_topups.c.key == key)
                )
            ).first()
        if row is None:
            return NotFound()
        return _answer(row.outcome, row.reference, row.reason, row.message)

    async def _process(
        self, key: str, iccid: str, data_mb: int | None, validity_days: int
    ) -> Applied | Failed:
        """Apply (or refuse) once per key; a key seen before gets its recorded result."""
        await self._ensure_ledger()
        answer = self._judge(iccid)
        ledger = simulated_carrier_topups
        async with self._sessions.begin() as session:
            recorded = await insert_once(
                session,
                insert(ledger).values(
                    key=key,
                    iccid=iccid,
                    data_mb=data_mb,
                    validity_days=validity_days,
                    outcome="applied" if isinstance(answer, Applied) else "failed",
                    reason=getattr(answer, "reason", None),
                    message=getattr(answer, "message", None),
                    reference=getattr(answer, "reference", None),
                    requests=1,
                    recorded_at=datetime.now(UTC),
                ),
            )
            if recorded:
                return answer
            await session.execute(
                update(ledger).where(ledger.c.key == key).values(requests=ledger.c.requests + 1)
            )
            row = (await session.execute(select(ledger).where(ledger.c.key == key))).one()
        return _answer(row.outcome, row.reference, row.reason, row.message)

    def _judge(self, iccid: str) -> Applied | Failed:
        if not is_valid_iccid(iccid):
            return Failed(True, "line_unknown", f"the carrier has no line {iccid}")
        if iccid in self.behaviour.suspended_iccids:
            return Failed(True, "line_suspended", f"line {iccid} is suspended")
        return Applied(reference=f"sim-{uuid.uuid4().hex[:16]}")

    async def _answer_delay(self) -> None:
        mean_s = self.behaviour.latency_ms / 1000
        if mean_s > 0:
            await asyncio.sleep(mean_s * self._dice.uniform(0.5, 1.5))

    async def _ensure_ledger(self) -> None:
        # The carrier owns its storage: provisioning's schema never includes it.
        async with self._ledger_lock:
            if self._ledger_ready:
                return
            async with self._sessions.begin() as session:
                connection = await session.connection()
                await connection.run_sync(carrier_metadata.create_all)
            self._ledger_ready = True


def _answer(
    outcome: str, reference: str | None, reason: str | None, message: str | None
) -> Applied | Failed:
    if outcome == "applied":
        return Applied(reference=reference or "")
    return Failed(permanent=True, reason=reason or "refused", message=message or "")


def simulator_for(
    settings: ProvisioningSettings, sessions: async_sessionmaker[AsyncSession]
) -> CarrierSimulator:
    dice = None if settings.carrier_seed is None else random.Random(settings.carrier_seed)  # noqa: S311
    return CarrierSimulator(sessions, CarrierBehaviour.from_settings(settings), dice)
