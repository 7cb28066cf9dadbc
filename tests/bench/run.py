"""One benchmark run, start to end:

1. a broker of its own; the raw relay (three aiokafka processes) ramped in closed loop to
   its maximum: the limit;
2. PostgreSQL (fsync on) and the three services; the saga ramped in closed loop to its
   maximum, measured there, then in open loop at fixed shares of that maximum; with
   --profile, one more closed-loop phase under py-spy;
3. the invariants, over everything the run published;
4. the report: a table, results.json and chart.png.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from deploy.local.kafka import LocalKafka
from deploy.local.postgres import LocalPostgres
from deploy.local.processes import SERVICES
from tests.bench import batch_sizes, profiling, raw_relay, report, stack, statements
from tests.bench.driver import ClosedLoop, Driver, OpenLoop, Phase, Timing, run_phase
from tests.bench.invariants import Verdict, check
from tests.bench.resources import ResourceMeter
from tests.bench.sizes import Sizes
from tests.bench.targets import RawRelay, Saga, Target
from tests.faults.state import baseline_before_the_load

WARM_UP_ORDERS = 5
WARM_UP_WITHIN_S = 120.0


@dataclass(frozen=True)
class Options:
    sizes: Sizes
    mode: str  # "full" or "smoke"
    results: Path
    simulator_latency_ms: float = 1.0
    profile: bool = False
    note: str = ""


@dataclass
class Bench:
    """What the phases share: the meter, the progress display."""

    sizes: Sizes
    meter: ResourceMeter
    progress: Progress

    async def measure(
        self, driver: Driver, label: str, load: ClosedLoop | OpenLoop, seconds: float
    ) -> Phase:
        timing = Timing(seconds, self.sizes.warmup_s, self.sizes.drain_s)
        async with self._shown(driver, label, timing.warmup_s + seconds):
            return await run_phase(driver, label, load, timing, self.meter)

    async def ramp(self, driver: Driver, levels: tuple[int, ...]) -> list[Phase]:
        """Closed loop at each level in turn, until throughput has not improved on the best
        by more than `ramp_gain` for `ramp_patience` levels in a row, or the p99 passes its
        limit."""
        steps: list[Phase] = []
        best, flat = 0.0, 0
        for level in levels:
            label = f"{driver.target.name} ramp {level}"
            step = await self.measure(driver, label, ClosedLoop(level), self.sizes.ramp_s)
            steps.append(step)
            if step.percentile(99) > self.sizes.ramp_p99_limit_ms:
                break
            improved = step.throughput >= best * (1 + self.sizes.ramp_gain)
            best, flat = max(best, step.throughput), 0 if improved else flat + 1
            if flat >= self.sizes.ramp_patience:
                break
        return steps

    async def maximum(self, driver: Driver, levels: tuple[int, ...]) -> tuple[list[Phase], Phase]:
        """A warm-up at the first level (JIT, caches, connection pools), the ramp, then the
        measured closed-loop phase at the ramp's best level."""
        warm_up = f"{driver.target.name} warm-up"
        await self.measure(driver, warm_up, ClosedLoop(levels[0]), self.sizes.ramp_s)
        steps = await self.ramp(driver, levels)
        # The fewest orders in flight that reach the top throughput (within `ramp_gain`): more
        # only add queueing, that is latency.
        within = [s for s in steps if s.percentile(99) <= self.sizes.ramp_p99_limit_ms] or steps
        top = max(s.throughput for s in within)
        best = next(s for s in within if s.throughput >= top * (1 - self.sizes.ramp_gain))
        label = f"{driver.target.name} closed loop"
        at_best = ClosedLoop(best.concurrency or 1)
        measured = await self.measure(driver, label, at_best, self.sizes.closed_s)
        return steps, measured

    @contextlib.asynccontextmanager
    async def _shown(self, driver: Driver, label: str, seconds: float) -> AsyncIterator[None]:
        task = self.progress.add_task(label, total=seconds, orders="", rate="")

        async def tick() -> None:
            started = time.monotonic()
            while True:
                await asyncio.sleep(0.25)
                now = time.monotonic()
                recent = sum(1 for e in driver.endings[-5000:] if e.ended > now - 1.0)
                self.progress.update(
                    task,
                    completed=min(seconds, now - started),
                    orders=f"{len(driver.endings)} ended",
                    rate=f"{recent}/s",
                )

        ticking = asyncio.create_task(tick())
        try:
            yield
        finally:
            ticking.cancel()
            await asyncio.gather(ticking, return_exceptions=True)
            self.progress.update(task, completed=seconds)


@contextlib.asynccontextmanager
async def driving(bootstrap_servers: str, target: Target) -> AsyncIterator[Driver]:
    driver = Driver(bootstrap_servers, target)
    try:
        await driver.start()
        await driver.warm_up(WARM_UP_ORDERS, WARM_UP_WITHIN_S)
        yield driver
    finally:
        await driver.stop()


async def run(options: Options, console: Console) -> tuple[dict[str, Any], Path]:
    started = datetime.now(UTC)
    out_dir = options.results / f"{started:%Y%m%dT%H%M%SZ}"
    log_dir = out_dir / "logs"
    meter = ResourceMeter()
    meter.track("driver", os.getpid())
    columns = (
        TextColumn("{task.description:<28}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[orders]:>14}"),
        TextColumn("{task.fields[rate]:>8}"),
    )
    figures: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "mode": options.mode,
        "note": options.note,
        "machine": report.machine(),
        "sizes": options.sizes.__dict__,
        "simulator_latency_ms": options.simulator_latency_ms,
        "message_sizes_bytes": raw_relay.message_sizes(),
    }
    with Progress(*columns, console=console) as progress, stack.broker() as kafka:
        bench = Bench(options.sizes, meter, progress)
        meter.track("kafka", _pid(kafka.pid))
        figures["raw_relay"] = await _raw_relay(bench, kafka, log_dir)
        with stack.postgres() as server:
            meter.track("postgres", _pid(server.pid), tree=True)
            saga, verdict = await _saga(bench, options, kafka, server, log_dir, out_dir)
        meter.read_peaks()
    figures["saga"] = saga
    figures["invariants"] = verdict.figures()
    raw_max = figures["raw_relay"]["closed_loop"]["throughput_per_s"]
    figures["ratio_to_raw_relay"] = round(
        saga["closed_loop"]["throughput_per_s"] / raw_max if raw_max else 0.0, 3
    )
    figures["cpu_s_per_saga"] = saga["closed_loop"]["cpu_s_per_saga"]
    figures["cpu_s_per_saga_by_party"] = report.by_party(figures["cpu_s_per_saga"])
    figures["peak_rss_mb"] = {name: round(mb, 1) for name, mb in sorted(meter.peak_rss_mb.items())}
    if "profile" in saga:
        figures["profile"] = saga.pop("profile")
    figures["targets"] = report.targets(figures)
    figures["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    report.write(figures, out_dir)
    return figures, out_dir


async def _raw_relay(bench: Bench, kafka: LocalKafka, log_dir: Path) -> dict[str, Any]:
    await raw_relay.create_topics(kafka.bootstrap_servers)
    with stack.raw_relays(kafka, log_dir) as relays:
        for relay in relays:
            bench.meter.track(f"raw-{relay.role}", relay.process.pid)
        async with driving(kafka.bootstrap_servers, RawRelay()) as driver:
            steps, measured = await bench.maximum(driver, bench.sizes.raw_ramp_levels)
        for relay in relays:
            bench.meter.forget(f"raw-{relay.role}")
    return {
        "ramp": [s.figures() for s in steps],
        "closed_loop": measured.figures(),
        "send_failures": driver.send_failures,
    }


async def _saga(
    bench: Bench,
    options: Options,
    kafka: LocalKafka,
    server: LocalPostgres,
    log_dir: Path,
    out_dir: Path,
) -> tuple[dict[str, Any], Verdict]:
    sizes = bench.sizes
    with stack.services(kafka, server, log_dir, options.simulator_latency_ms) as services:
        for instance in services.instances:
            assert instance.process is not None
            bench.meter.track(instance.name, instance.process.pid)
        baseline = await baseline_before_the_load(services)
        target = Saga()
        ours = [(i.name, i.base_url) for i in services.instances if i.name in SERVICES]
        async with driving(kafka.bootstrap_servers, target) as driver:
            steps, measured = await bench.maximum(driver, sizes.ramp_levels)
            at_best = ClosedLoop(measured.concurrency or 1)
            # Batch sizes over the closed loop at its best, once more: the phase measured.
            # And the statements and transactions per saga, per database.
            before = await batch_sizes.read(ours)
            counted = await statements.read(server.url().replace("+asyncpg", ""))
            ended = len(driver.endings)
            closed = await bench.measure(driver, "saga closed loop (batches)", at_best,
                                         sizes.closed_s / 4)  # fmt: skip
            seen = batch_sizes.quantiles(before, await batch_sizes.read(ours))
            run_by_saga = statements.per_saga(
                counted,
                await statements.read(server.url().replace("+asyncpg", "")),
                len(driver.endings) - ended,
                {url.rsplit("/", 1)[1]: name for name, url in services.databases.items()},
            )
            figures: dict[str, Any] = {
                "ramp": [s.figures() for s in steps],
                "closed_loop": measured.figures(),
                "batch_sizes": {"throughput_per_s": closed.throughput, "by_topic": seen},
                "statements": {"throughput_per_s": closed.throughput, "by_service": run_by_saga},
                "open_loop": await _open_loops(bench, driver, measured.throughput),
            }
            if options.profile:
                pids = {i.name: i.process.pid for i in services.instances if i.process is not None}
                figures |= await _profiled(bench, driver, at_best, pids, out_dir / "profile")
            figures["send_failures"] = driver.send_failures
        verdict = await check(services, target.requests, baseline, sizes.settle_s)
        for instance in services.instances:
            bench.meter.forget(instance.name)
    return figures, verdict


async def _open_loops(bench: Bench, driver: Driver, maximum: float) -> list[dict[str, Any]]:
    """Orders on schedule at each fixed rate, then at each share of the closed-loop
    maximum."""
    phases = []
    for rate in bench.sizes.open_rates:
        phase = await bench.measure(
            driver, f"saga open loop {rate:g}/s", OpenLoop(rate), bench.sizes.open_s
        )
        phases.append({**phase.figures(), "fraction": None, "rate": rate})
    for fraction in bench.sizes.open_fractions:
        load = OpenLoop(max(1.0, fraction * maximum))
        phase = await bench.measure(
            driver, f"saga open loop {fraction:.0%}", load, bench.sizes.open_s
        )
        phases.append({**phase.figures(), "fraction": fraction})
    return phases


async def _profiled(
    bench: Bench, driver: Driver, load: ClosedLoop, pids: dict[str, int], out_dir: Path
) -> dict[str, Any]:
    """One more closed-loop phase, every service under py-spy (which slows it: its figures
    are kept apart from the measured ones)."""
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    seconds = bench.sizes.profile_s
    sampled = profiling.record(pids, seconds + bench.sizes.warmup_s, out_dir)
    phase, profiles = await asyncio.gather(
        bench.measure(driver, "saga profiled", load, seconds), sampled
    )
    return {
        "profiled_phase": phase.figures(),
        "profile": {name: profile.figures() for name, profile in profiles.items()},
    }


def _pid(pid: int | None) -> int:
    assert pid is not None
    return pid
