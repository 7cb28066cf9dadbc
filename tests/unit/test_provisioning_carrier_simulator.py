"""The simulated carrier on a temporary SQLite file: its answers, its failures and its
ledger, which outlives the simulator object as a real carrier's would."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.provisioning.carrier import (
    Applied,
    CarrierTimeout,
    CarrierUnavailable,
    Failed,
    NotFound,
)
from services.provisioning.carrier_simulator import (
    CarrierBehaviour,
    CarrierSimulator,
    simulated_carrier_topups,
    simulator_for,
)
from services.provisioning.settings import ProvisioningSettings
from shared import db

ICCID = "8944500102198304826"
SUSPENDED = "8944500102198304834"


def key() -> str:
    return f"{uuid.uuid4()}:topup"


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'carrier.db'}")
    yield db.sessions_for(engine)
    await engine.dispose()


def carrier(
    sessions: async_sessionmaker[AsyncSession],
    *,
    latency_ms: float = 0.0,
    transient_failure_rate: float = 0.0,
    timeout_rate: float = 0.0,
    timeout_applied_rate: float = 0.5,
) -> CarrierSimulator:
    behaviour = CarrierBehaviour(
        latency_ms, transient_failure_rate, timeout_rate, timeout_applied_rate,
        suspended_iccids=frozenset({SUSPENDED}),
    )  # fmt: skip
    return CarrierSimulator(sessions, behaviour)


async def requests_for(sessions: async_sessionmaker[AsyncSession], k: str) -> int | None:
    async with sessions() as session:
        ledger = simulated_carrier_topups
        return await session.scalar(select(ledger.c.requests).where(ledger.c.key == k))


async def test_a_key_is_applied_once_and_a_repeat_gets_the_first_answer(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    sim, k = carrier(sessions), key()
    first = await sim.top_up(k, ICCID, 1024, 7)
    again = await sim.top_up(k, ICCID, 1024, 7)
    assert isinstance(first, Applied)
    assert again == first
    assert await sim.status(k) == first
    assert await requests_for(sessions, k) == 2


async def test_a_suspended_line_is_refused_for_good_and_the_key_remembers_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    sim, k = carrier(sessions), key()
    refused = Failed(True, "line_suspended", f"line {SUSPENDED} is suspended")
    assert await sim.top_up(k, SUSPENDED, 1024, 7) == refused
    sim.behaviour.suspended_iccids = frozenset()
    assert await sim.top_up(k, SUSPENDED, 1024, 7) == refused


@pytest.mark.parametrize("iccid", ["1944500102198304823", "8944500102198304827", "89445"])
async def test_a_line_that_is_not_a_well_formed_iccid_is_unknown(
    sessions: async_sessionmaker[AsyncSession], iccid: str
) -> None:
    answer = await carrier(sessions).top_up(key(), iccid, 1024, 7)
    assert isinstance(answer, Failed)
    assert (answer.permanent, answer.reason) == (True, "line_unknown")


async def test_a_transient_failure_does_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    sim, k = carrier(sessions, transient_failure_rate=1.0), key()
    with pytest.raises(CarrierUnavailable):
        await sim.top_up(k, ICCID, 1024, 7)
    sim.behaviour.transient_failure_rate = 0.0
    assert await sim.status(k) == NotFound()


async def test_a_status_request_can_fail_transiently_too(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    with pytest.raises(CarrierUnavailable):
        await carrier(sessions, transient_failure_rate=1.0).status(key())


async def test_a_timeout_after_processing_applied_the_top_up(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    sim, k = carrier(sessions, timeout_rate=1.0, timeout_applied_rate=1.0), key()
    with pytest.raises(CarrierTimeout):
        await sim.top_up(k, ICCID, 1024, 7)
    assert isinstance(await sim.status(k), Applied)


async def test_a_timeout_that_lost_the_request_applied_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    sim, k = carrier(sessions, timeout_rate=1.0, timeout_applied_rate=0.0), key()
    with pytest.raises(CarrierTimeout):
        await sim.top_up(k, ICCID, 1024, 7)
    assert await sim.status(k) == NotFound()


async def test_a_restarted_carrier_remembers_what_it_applied(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'carrier.db'}"
    k = key()
    answers = []
    for _restart in range(2):
        engine = db.create_engine(url)
        answers.append(await carrier(db.sessions_for(engine)).top_up(k, ICCID, 1024, 7))
        await engine.dispose()
    assert answers[0] == answers[1]


async def test_every_answer_takes_about_the_configured_latency(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    sim = carrier(sessions, latency_ms=40)
    await sim.status(key())  # creates the ledger table, not part of the latency
    started = time.monotonic()
    await sim.status(key())
    assert 0.015 <= time.monotonic() - started < 1.0


async def test_the_same_seed_replays_the_same_failures(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async def run(seed: int) -> list[str]:
        sim = CarrierSimulator(
            sessions, CarrierBehaviour(transient_failure_rate=0.5), random.Random(seed)
        )
        seen = []
        for _ in range(12):
            try:
                seen.append(type(await sim.status(key())).__name__)
            except CarrierUnavailable:
                seen.append("unavailable")
        return seen

    assert await run(7) == await run(7)
    assert {"unavailable", "NotFound"} <= set(await run(7))


async def test_the_simulator_takes_its_behaviour_from_the_settings(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    sim = simulator_for(
        ProvisioningSettings(carrier_latency_ms=0, carrier_suspended_iccids=SUSPENDED),
        sessions,
    )
    assert sim.behaviour.suspended_iccids == {SUSPENDED}
    answer = await sim.top_up(key(), SUSPENDED, None, 30)
    assert isinstance(answer, Failed)
    assert answer.reason == "line_suspended"
