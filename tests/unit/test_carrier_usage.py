"""The carrier simulator's usage reports: which lines it reports on, how much they use,
and the loop that publishes them (in memory, on a temporary SQLite ledger of its own)."""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, cast

import pytest
from faststream import Context
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.message import KafkaMessage
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.carrier_simulator import ledger as carrier_ledger
from services.carrier_simulator.packages import PACKAGES
from services.carrier_simulator.settings import CarrierSimulatorSettings
from services.carrier_simulator.usage_reports import (
    BURST_CAP,
    CarrierTopUp,
    active_lines,
    carrier_topups,
    period_usage_mb,
    publish_reports,
    report_usage,
    usage_reports,
)
from shared import topics
from shared.events import UsageReported
from shared.kafka import build_broker
from shared.worker import Runtime
from tests.factories import random_iccid
from tests.unit.harness import sqlite_sessions

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
INTERVAL_S = 10.0


def usage(
    lines: list[str], seconds: float = INTERVAL_S, mean_mb: float = 40, seed: int = 7
) -> list[UsageReported]:
    """A period of `seconds` ending NOW, for lines active since long before."""
    long_before = NOW - timedelta(days=1)
    return usage_reports(
        dict.fromkeys(lines, long_before), NOW - timedelta(seconds=seconds), NOW,
        mean_mb_per_interval=mean_mb, interval_s=INTERVAL_S, dice=random.Random(seed),
    )  # fmt: skip


def samples(mean_mb: float, n: int = 20_000, seed: int = 1) -> list[int]:
    dice = random.Random(seed)
    return [period_usage_mb(mean_mb, dice) for _ in range(n)]


# --- which lines -------------------------------------------------------------------


def test_a_line_is_reported_while_a_top_up_the_carrier_applied_is_still_valid() -> None:
    valid, ended = random_iccid(), random_iccid()
    ledger = [
        CarrierTopUp(valid, NOW - timedelta(days=29), validity_days=30),
        CarrierTopUp(ended, NOW - timedelta(days=8), validity_days=7),
    ]
    assert active_lines(ledger, NOW) == {valid: NOW - timedelta(days=29)}


def test_a_line_topped_up_again_is_active_since_its_first_top_up_still_valid() -> None:
    line = random_iccid()
    ledger = [
        CarrierTopUp(line, NOW - timedelta(days=40), validity_days=30),
        CarrierTopUp(line, NOW - timedelta(days=5), validity_days=7),
        CarrierTopUp(line, NOW - timedelta(days=1), validity_days=7),
    ]
    assert active_lines(ledger, NOW) == {line: NOW - timedelta(days=5)}


def test_a_top_up_stops_counting_the_moment_its_validity_ends() -> None:
    line = random_iccid()
    assert active_lines([CarrierTopUp(line, NOW - timedelta(days=7), 7)], NOW) == {}


def test_lines_come_in_iccid_order_so_a_seeded_run_repeats() -> None:
    lines = [random_iccid() for _ in range(10)]
    ledger = [CarrierTopUp(line, NOW - timedelta(hours=1), 7) for line in lines]
    assert list(active_lines(ledger, NOW)) == sorted(lines)


# --- how much ----------------------------------------------------------------------


def test_a_line_uses_the_mean_per_interval_on_average_idle_periods_included() -> None:
    assert statistics.fmean(samples(40)) == pytest.approx(40, rel=0.03)


def test_about_one_period_in_five_is_idle_and_a_few_are_heavy() -> None:
    used = samples(40)
    assert sum(u == 0 for u in used) / len(used) == pytest.approx(0.2, abs=0.02)
    assert max(used) > 3 * 40
    assert max(used) <= BURST_CAP * 40


def test_a_zero_mean_uses_nothing() -> None:
    assert set(samples(0, n=100)) == {0}


def test_an_idle_period_gets_no_report() -> None:
    lines = [random_iccid() for _ in range(50)]
    reports = usage(lines)
    assert 0 < len(reports) < len(lines)
    assert all(r.used_mb > 0 for r in reports)


def test_each_report_covers_the_period_for_one_line_with_an_id_of_its_own() -> None:
    lines = sorted(random_iccid() for _ in range(20))
    reports = usage(lines)
    assert all(r.period_start == NOW - timedelta(seconds=INTERVAL_S) for r in reports)
    assert all(r.period_end == r.occurred_at == NOW for r in reports)
    assert [r.iccid for r in reports] == sorted({r.iccid for r in reports})
    assert len({r.event_id for r in reports}) == len(reports)


def test_a_longer_period_uses_proportionally_more() -> None:
    lines = [random_iccid() for _ in range(2000)]
    one = sum(r.used_mb for r in usage(lines, seconds=INTERVAL_S))
    three = sum(r.used_mb for r in usage(lines, seconds=3 * INTERVAL_S))
    assert three / one == pytest.approx(3, rel=0.1)


def test_a_line_activated_during_the_period_is_reported_from_its_activation_on() -> None:
    lines = [random_iccid() for _ in range(2000)]
    start, activated = NOW - timedelta(seconds=INTERVAL_S), NOW - timedelta(seconds=2.5)
    whole = usage_reports(
        dict.fromkeys(lines, start - timedelta(days=1)), start, NOW,
        mean_mb_per_interval=40, interval_s=INTERVAL_S, dice=random.Random(5),
    )  # fmt: skip
    quarter = usage_reports(
        dict.fromkeys(lines, activated), start, NOW,
        mean_mb_per_interval=40, interval_s=INTERVAL_S, dice=random.Random(5),
    )  # fmt: skip
    assert all(r.period_start == activated for r in quarter)
    total = sum(r.used_mb for r in quarter) / sum(r.used_mb for r in whole)
    assert total == pytest.approx(0.25, rel=0.1)


def test_the_same_seed_reports_the_same_usage() -> None:
    lines = [random_iccid() for _ in range(20)]
    first, again = usage(lines, seed=42), usage(lines, seed=42)
    assert [(r.iccid, r.used_mb) for r in first] == [(r.iccid, r.used_mb) for r in again]


# --- the loop ----------------------------------------------------------------------


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with sqlite_sessions(tmp_path / "carrier.db", carrier_ledger.metadata) as sessions:
        yield sessions


async def applied_topup(
    sessions: async_sessionmaker[AsyncSession], iccid: str, days_ago: float = 0
) -> None:
    """A 1 GB, 7-day top-up the carrier applied `days_ago`."""
    applied_at = datetime.now(UTC) - timedelta(days=days_ago)
    package = PACKAGES["eurolink-7days-1gb-topup"]
    async with sessions.begin() as session:
        await carrier_ledger.place_order(
            session, iccid, package, f"{uuid.uuid4()}:topup", applied_at
        )


Seen = list[tuple[bytes, dict[str, Any], UsageReported]]


def watched(broker: KafkaBroker, enough: int) -> tuple[Seen, asyncio.Event]:
    """What the broker receives on carrier.usage.v1; the event is set after `enough`."""
    seen: Seen = []
    got_enough = asyncio.Event()

    @broker.subscriber(topics.CARRIER_USAGE, group_id="test-watch")
    async def collect(
        body: dict[str, Any], message: Annotated[KafkaMessage, Context("message")]
    ) -> None:
        key = message.raw_message.key  # type: ignore[union-attr]
        seen.append((key, message.headers, UsageReported(**body)))
        if len(seen) >= enough:
            got_enough.set()

    return seen, got_enough


def carrier_settings(interval_s: float) -> CarrierSimulatorSettings:
    return CarrierSimulatorSettings(
        carrier_usage_interval_s=interval_s, carrier_usage_mean_mb=100, carrier_seed=3
    )


async def test_the_carrier_reports_usage_of_its_active_lines_only(
    ledger: async_sessionmaker[AsyncSession],
) -> None:
    active, ended = random_iccid(), random_iccid()
    await applied_topup(ledger, active)
    await applied_topup(ledger, ended, days_ago=8)
    settings = carrier_settings(interval_s=0.05)
    broker = build_broker(settings, sessions=ledger)
    seen, five_reports = watched(broker, enough=5)
    async with TestKafkaBroker(broker):
        loop = asyncio.create_task(report_usage(Runtime(settings, broker, ledger)))
        await asyncio.wait_for(five_reports.wait(), timeout=5)
        loop.cancel()
    assert {report.iccid for _, _, report in seen} == {active}
    for key, headers, report in seen:
        assert key == active.encode()
        assert headers["type"] == "UsageReported"
        assert headers["event_id"] == str(report.event_id)
        assert "order_id" not in headers
        assert 0 < report.used_mb <= BURST_CAP * 100
    periods = sorted((r.period_start, r.period_end) for _, _, r in seen)
    assert all(end <= later_start for (_, end), (later_start, _) in itertools.pairwise(periods))
    # What it reported is what its usage API counts: drawn from the line's package.
    async with ledger() as session:
        [order] = await carrier_ledger.line_orders(session, active)
    assert order.used_mb >= sum(report.used_mb for _, _, report in seen)


async def test_the_carrier_reports_nothing_when_its_interval_is_zero(
    ledger: async_sessionmaker[AsyncSession],
) -> None:
    settings = carrier_settings(interval_s=0)
    broker = build_broker(settings, sessions=ledger)
    await asyncio.wait_for(report_usage(Runtime(settings, broker, ledger)), timeout=1)


async def test_before_its_first_top_up_the_carrier_has_no_lines(
    ledger: async_sessionmaker[AsyncSession],
) -> None:
    assert await carrier_topups(ledger, datetime.now(UTC)) == []


class BrokerAway:
    def __init__(self, failing: set[str]) -> None:
        self.failing = failing
        self.published: list[str] = []

    async def publish(self, body: dict[str, Any], **_: Any) -> None:
        if body["iccid"] in self.failing:
            raise ConnectionError("broker unreachable")
        self.published.append(body["iccid"])


async def test_reports_that_could_not_be_published_are_kept_to_send_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lines = sorted(random_iccid() for _ in range(20))
    reports = usage(lines)
    failing = {reports[0].iccid, reports[-1].iccid}
    broker = BrokerAway(failing)

    unsent = await publish_reports(cast(KafkaBroker, broker), reports)

    assert [r.iccid for r in unsent] == [reports[0].iccid, reports[-1].iccid]
    assert sorted(broker.published) == sorted({r.iccid for r in reports} - failing)
    assert f"2 of {len(reports)} usage reports not published" in caplog.text
