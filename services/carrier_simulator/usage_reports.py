"""The simulated carrier's usage reports (carrier.usage.v1) for its active lines.

Every CARRIER_USAGE_INTERVAL_S (0, the default: never; `make run` sets 10) the carrier
reports, for each line it has applied a top-up to that is still valid by its own ledger
(an order's `expires_at` is in the future), the data the line used in the period since
its last pass, and draws it from the line's packages in its ledger (so that its usage
API answers the same). It is the outside world: it publishes straight to Kafka as the
broker principal `carrier` (KAFKA_USERNAME, KAFKA_PASSWORD), and knows nothing of
provisioning's balances, so it reports usage beyond what a line has left just as a real
network would.

How much a line uses in a period (`period_usage_mb`):
- idle with probability IDLE_SHARE (the phone stayed off data): an idle period gets
  no report at all, as a carrier writes usage records only for sessions with traffic;
- otherwise a lognormal amount: most periods modest, a few heavy (a video call), at
  most BURST_CAP times the mean;
- scaled so that a line uses CARRIER_USAGE_MEAN_MB per interval on average, idle periods
  included, and in proportion to the period's length (a late pass covers more time; a
  line activated during the period is reported from its activation on).
CARRIER_SEED fixes the dice, so a run's amounts can be replayed.

A report that cannot be published is logged and sent again (same report id) on the next
pass: the carrier does not lose usage because the broker was away.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.carrier_simulator import ledger
from services.carrier_simulator.settings import CarrierSimulatorSettings
from shared import topics
from shared.events import UsageReported
from shared.kafka import addresses, broker_security, message_headers
from shared.kafka_access import CARRIER, KafkaClient
from shared.settings import specialise
from shared.worker import Runtime, every

log = logging.getLogger(__name__)

IDLE_SHARE: Final = 0.2
SPREAD: Final = 0.8  # the lognormal's sigma: how uneven busy periods are
BURST_CAP: Final = 10  # times the mean: a heavy period, not a runaway one
MAX_UNSENT: Final = 10_000  # reports kept for the next pass while the broker is away


@dataclass(frozen=True)
class CarrierTopUp:
    """One top-up the carrier applied, as its ledger holds it."""

    iccid: str
    recorded_at: datetime
    validity_days: int


def active_lines(topups: Iterable[CarrierTopUp], now: datetime) -> dict[str, datetime]:
    """The lines with a top-up still valid at `now`, each with when the first of those was
    applied, in ICCID order (so a seeded run repeats)."""
    since: dict[str, datetime] = {}
    for topup in topups:
        if topup.recorded_at + timedelta(days=topup.validity_days) > now:
            since[topup.iccid] = min(since.get(topup.iccid, topup.recorded_at), topup.recorded_at)
    return dict(sorted(since.items()))


def period_usage_mb(mean_mb: float, dice: random.Random) -> int:
    """One line's data in one period: 0 when idle, else lognormal; `mean_mb` on average."""
    if mean_mb <= 0 or dice.random() < IDLE_SHARE:
        return 0
    busy_mean = mean_mb / (1 - IDLE_SHARE)
    mu = math.log(busy_mean) - SPREAD**2 / 2  # a lognormal's mean is exp(mu + sigma^2 / 2)
    return min(round(dice.lognormvariate(mu, SPREAD)), math.ceil(BURST_CAP * mean_mb))


def usage_reports(
    lines: Mapping[str, datetime],
    period_start: datetime,
    period_end: datetime,
    *,
    mean_mb_per_interval: float,
    interval_s: float,
    dice: random.Random,
) -> list[UsageReported]:
    """What the carrier reports for one period: one report per line that used data, from
    the line's activation when that came later than the period's start."""
    reports = []
    for iccid, active_since in lines.items():
        start = max(period_start, active_since)
        period_s = (period_end - start).total_seconds()
        mean_mb = mean_mb_per_interval * period_s / interval_s if interval_s > 0 else 0.0
        used_mb = period_usage_mb(mean_mb, dice)
        if used_mb > 0:
            reports.append(
                UsageReported(
                    event_id=uuid.uuid4(),
                    iccid=iccid,
                    used_mb=used_mb,
                    period_start=start,
                    period_end=period_end,
                    occurred_at=period_end,
                )
            )
    return reports


async def run_usage_reports(
    settings: CarrierSimulatorSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The simulator's reporting loop, with its own client, when CARRIER_USAGE_INTERVAL_S > 0."""
    if settings.carrier_usage_interval_s <= 0:
        return
    async with carrier_broker(settings) as broker:
        await report_usage(Runtime(settings, broker, sessions))


async def report_usage(runtime: Runtime) -> None:
    """The carrier's reporting loop through `runtime.broker`, when CARRIER_USAGE_INTERVAL_S > 0."""
    settings = specialise(runtime.settings, CarrierSimulatorSettings)
    if settings.carrier_usage_interval_s <= 0:
        return
    interval_s = settings.carrier_usage_interval_s
    # Simulated usage needs no cryptographic randomness; a seed replays a run.
    dice = random.Random(settings.carrier_seed)  # noqa: S311
    period_start = datetime.now(UTC) - timedelta(seconds=interval_s)
    unsent: list[UsageReported] = []

    async def one_period() -> int:
        nonlocal period_start, unsent
        period_end = datetime.now(UTC)
        lines = active_lines(await carrier_topups(runtime.sessions, period_end), period_end)
        reports = usage_reports(
            lines, period_start, period_end,
            mean_mb_per_interval=settings.carrier_usage_mean_mb, interval_s=interval_s, dice=dice,
        )  # fmt: skip
        period_start = period_end
        await draw(runtime.sessions, reports, period_end)
        unsent = (await publish_reports(runtime.broker, [*unsent, *reports]))[-MAX_UNSENT:]
        return len(reports)

    log.info(
        "simulated carrier: reporting usage every %.1fs, %d MB per line on average",
        interval_s,
        settings.carrier_usage_mean_mb,
    )
    await every(interval_s, one_period, "simulated carrier usage reports")


@asynccontextmanager
async def carrier_broker(settings: CarrierSimulatorSettings) -> AsyncIterator[KafkaBroker]:
    """The carrier's own client: it signs in as KAFKA_USERNAME (`carrier` on a broker with ACLs)."""
    broker = KafkaBroker(
        addresses(settings.kafka_bootstrap_servers),
        security=broker_security(KafkaClient.of(settings)),
        client_id=CARRIER,
        acks="all",
        logger=log,
    )
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


async def carrier_topups(
    sessions: async_sessionmaker[AsyncSession], now: datetime
) -> list[CarrierTopUp]:
    """Every top-up the carrier applied that is still valid at `now`."""
    async with sessions() as session:
        orders = await ledger.active_orders(session, now)
    return [CarrierTopUp(o.iccid, o.created_at, o.validity_days) for o in orders]


async def draw(
    sessions: async_sessionmaker[AsyncSession], reports: list[UsageReported], now: datetime
) -> None:
    """What the lines used, taken from their packages in the ledger (its usage API)."""
    async with sessions.begin() as session:
        for report in reports:
            await ledger.draw_usage(session, report.iccid, report.used_mb, now)


async def publish_reports(broker: KafkaBroker, reports: list[UsageReported]) -> list[UsageReported]:
    """Publish each report keyed by its line; the ones that failed (logged), to send again."""
    results = await asyncio.gather(
        *(
            broker.publish(
                report.model_dump(mode="json"),
                topic=topics.CARRIER_USAGE,
                key=report.iccid.encode(),
                headers=message_headers(report),
            )
            for report in reports
        ),
        return_exceptions=True,
    )
    outcomes = zip(reports, results, strict=True)
    failed = [report for report, result in outcomes if isinstance(result, Exception)]
    if failed:
        error = next(result for result in results if isinstance(result, Exception))
        log.warning(
            "simulated carrier: %d of %d usage reports not published (%r); sent again next time",
            len(failed),
            len(reports),
            error,
        )
    elif reports:
        log.info(
            "simulated carrier: reported %d MB used on %d line(s)",
            sum(r.used_mb for r in reports),
            len(reports),
        )
    return failed
