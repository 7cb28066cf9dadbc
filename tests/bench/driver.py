"""The load driver: one producer publishing orders, one consumer reading their endings,
in one process, so an order's latency is two readings of the same monotonic clock.

Closed loop: `concurrency` orders are kept in flight, a new one published as soon as one
ends. Open loop: orders are published on a fixed schedule, whatever the system does.
A phase counts what ends inside its window (after a warm-up), then waits for the orders
still in flight, so the next phase starts from an idle system.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.kafka_access import KafkaClient
from tests.bench.resources import CpuReading, ResourceMeter, cpu_spent
from tests.bench.targets import Target
from tests.faults.state import existing_partitions

OPEN_LOOP_TICK_S = 0.002


@dataclass(frozen=True)
class Ending:
    published: float
    ended: float
    completed: bool  # False: the order ended another way (declined, refunded, rejected...)


@dataclass
class Phase:
    name: str
    mode: str  # "closed" or "open"
    concurrency: int | None
    offered_per_s: float | None
    window_s: float
    published: int
    completed: int
    other_endings: int
    unfinished: int  # still in flight when the drain gave up
    latencies_ms: list[float] = field(repr=False)
    cpu_s: CpuReading

    @property
    def throughput(self) -> float:
        return self.completed / self.window_s if self.window_s > 0 else 0.0

    def percentile(self, p: int) -> float:
        """The p-th percentile (1 to 99), interpolated between the two nearest latencies."""
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else float("nan")
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[p - 1]

    def figures(self) -> dict[str, object]:
        return {
            "name": self.name,
            "mode": self.mode,
            "concurrency": self.concurrency,
            "offered_per_s": None if self.offered_per_s is None else round(self.offered_per_s, 1),
            "window_s": round(self.window_s, 2),
            "published": self.published,
            "completed_in_window": self.completed,
            "other_endings_in_window": self.other_endings,
            "unfinished_after_drain": self.unfinished,
            "throughput_per_s": round(self.throughput, 1),
            "latency_ms": {
                "p50": round(self.percentile(50), 2),
                "p95": round(self.percentile(95), 2),
                "p99": round(self.percentile(99), 2),
                "max": round(max(self.latencies_ms, default=float("nan")), 2),
            },
            "cpu_s": {name: round(s, 3) for name, s in self.cpu_s.items()},
            "cpu_s_per_saga": {
                name: round(s / self.completed, 6) if self.completed else None
                for name, s in self.cpu_s.items()
            },
        }


@dataclass
class Driver:
    bootstrap_servers: str
    target: Target
    in_flight: dict[str, float] = field(default_factory=dict)  # order id -> published at
    endings: list[Ending] = field(default_factory=list)
    published: int = 0
    send_failures: int = 0
    concurrency: int = 0  # > 0: closed loop, refilled after every batch of endings
    _producer: AIOKafkaProducer | None = None
    _consumer: AIOKafkaConsumer | None = None
    _collector: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers, acks="all", enable_idempotence=True
        )
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=None)
        await self._producer.start()
        await self._consumer.start()
        # The services create their topics as they start; the raw relay's are made first.
        partitions = await existing_partitions(
            KafkaClient(self.bootstrap_servers), [self.target.result_topic]
        )
        if not partitions:
            raise RuntimeError(f"{self.target.result_topic} does not exist")
        self._consumer.assign(partitions)
        # From where the topic ends now: endings of older orders are not ours.
        for partition, offset in (await self._consumer.end_offsets(partitions)).items():
            self._consumer.seek(partition, offset)
        self._collector = asyncio.create_task(self._collect())

    async def stop(self) -> None:
        if self._collector is not None:
            self._collector.cancel()
            await asyncio.gather(self._collector, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def publish(self, count: int) -> None:
        assert self._producer is not None
        for _ in range(count):
            order = self.target.new_order()
            self.in_flight[order.order_id] = time.monotonic()
            sent = await self._producer.send(
                self.target.request_topic, order.value, key=order.key, headers=order.headers
            )
            sent.add_done_callback(self._count_failure)
            self.published += 1

    def _count_failure(self, sent: asyncio.Future[object]) -> None:
        if sent.cancelled() or sent.exception() is not None:
            self.send_failures += 1

    async def _collect(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=50)
            now = time.monotonic()
            for records in batch.values():
                for record in records:
                    outcome = self.target.outcome(record.value or b"")
                    if outcome is None:
                        continue
                    published = self.in_flight.pop(outcome[0], None)
                    if published is not None:
                        self.endings.append(Ending(published, now, outcome[1]))
            if self.concurrency > len(self.in_flight):
                await self.publish(self.concurrency - len(self.in_flight))

    async def warm_up(self, orders: int, within_s: float) -> None:
        """One order at a time until `orders` have ended: consumer groups joined, caches and
        connections warm. Raises when the system does not answer in time."""
        goal = len(self.endings) + orders
        deadline = time.monotonic() + within_s
        self.concurrency = 1
        await self.publish(1)
        try:
            while len(self.endings) < goal:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{self.target.name}: {goal - len(self.endings)} of {orders} warm-up "
                        f"orders not ended after {within_s:.0f}s"
                    )
                await asyncio.sleep(0.05)
        finally:
            self.concurrency = 0
        await self.drain(within_s)

    async def drain(self, within_s: float) -> int:
        """Wait for the orders in flight; forget those still unfinished and return their count."""
        self.concurrency = 0
        deadline = time.monotonic() + within_s
        while self.in_flight and time.monotonic() < deadline:  # noqa: ASYNC110 (polls a dict)
            await asyncio.sleep(0.05)
        unfinished = len(self.in_flight)
        self.in_flight.clear()
        return unfinished


@dataclass(frozen=True)
class ClosedLoop:
    concurrency: int  # orders kept in flight


@dataclass(frozen=True)
class OpenLoop:
    rate: float  # orders published per second, on schedule


@dataclass(frozen=True)
class Timing:
    seconds: float  # the measured window
    warmup_s: float  # before it, not counted
    drain_s: float  # after it, waiting for the orders in flight


async def _offer(driver: Driver, load: ClosedLoop | OpenLoop) -> None:
    if isinstance(load, ClosedLoop):
        driver.concurrency = load.concurrency
        await driver.publish(load.concurrency)
        return
    started = time.monotonic()
    sent = 0
    while True:
        due = int((time.monotonic() - started) * load.rate) - sent
        if due > 0:
            await driver.publish(due)
            sent += due
        await asyncio.sleep(OPEN_LOOP_TICK_S)


async def run_phase(
    driver: Driver, name: str, load: ClosedLoop | OpenLoop, timing: Timing, meter: ResourceMeter
) -> Phase:
    """Apply `load`, count what ends in the window after the warm-up, then drain."""
    published_before = driver.published
    loading = asyncio.create_task(_offer(driver, load))
    try:
        await asyncio.sleep(timing.warmup_s)
        first = len(driver.endings)
        opened, cpu_before = time.monotonic(), meter.cpu_seconds()
        await asyncio.sleep(timing.seconds)
        closed, cpu_after = time.monotonic(), meter.cpu_seconds()
        last = len(driver.endings)
    finally:
        driver.concurrency = 0  # the closed loop publishes no more
        loading.cancel()
        await asyncio.gather(loading, return_exceptions=True)
    published = driver.published - published_before
    unfinished = await driver.drain(timing.drain_s)
    window = [e for e in driver.endings[first:last] if opened <= e.ended <= closed]
    return Phase(
        name=name,
        mode="closed" if isinstance(load, ClosedLoop) else "open",
        concurrency=load.concurrency if isinstance(load, ClosedLoop) else None,
        offered_per_s=load.rate if isinstance(load, OpenLoop) else None,
        window_s=closed - opened,
        published=published,
        completed=sum(e.completed for e in window),
        other_endings=sum(not e.completed for e in window),
        unfinished=unfinished,
        latencies_ms=[(e.ended - e.published) * 1000 for e in window if e.completed],
        cpu_s=cpu_spent(cpu_before, cpu_after),
    )
