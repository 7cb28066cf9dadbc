"""Chaos while the load runs, bounded in count and in time, and over by itself:
service instances and the outside world's simulators SIGKILLed and restarted, the broker
killed and restarted once (on a cluster, its brokers one by one, PostgreSQL restarted and a
service paused: cluster_chaos.py), and messages already delivered published again (same
bytes, same key, same headers)."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from deploy.local.kafka import LocalKafka
from deploy.local.outside_world import SIMULATORS
from deploy.local.processes import ServiceProcess
from tests.faults.chaos_figures import ChaosFigures
from tests.faults.cluster_chaos import unleash_cluster_chaos
from tests.faults.load import CONSUMED_TOPICS, MARKER_PREFIX
from tests.faults.stack import HEALTHY_WITHIN_S, Stack, instance_label

START_ATTEMPTS = 5  # a service started while the broker is down exits: start it again
SIMULATOR_KILL_SHARE = 0.2


@dataclass(frozen=True)
class ChaosLimits:
    seconds: float
    max_kills: int
    max_duplicates: int


async def unleash_chaos(stack: Stack, limits: ChaosLimits, rng: random.Random) -> ChaosFigures:
    figures = ChaosFigures()
    started = asyncio.get_running_loop().time()
    until = started + limits.seconds
    down: set[str] = set()  # services with an instance down (killed, or paused)
    if isinstance(stack.broker, LocalKafka):
        broker_crash_at = started + limits.seconds * rng.uniform(0.35, 0.6)
        brokers = restart_the_broker_once(stack, broker_crash_at, rng, figures)
    else:
        brokers = unleash_cluster_chaos(stack, limits.seconds, rng, figures, down)
    await asyncio.gather(
        kill_and_restart_random_instances(stack, until, limits.max_kills, rng, figures, down),
        brokers,
        deliver_a_sample_of_messages_again(stack, until, limits.max_duplicates, rng, figures),
    )
    await bring_back_every_instance(stack, figures)
    return figures


async def kill_and_restart_random_instances(
    stack: Stack,
    until: float,
    max_kills: int,
    rng: random.Random,
    figures: ChaosFigures,
    down: set[str],
) -> None:
    """Kill an instance every few seconds and bring it back after a moment, in the
    background: a restart takes a while (its consumer groups wait for the dead member's
    session to time out), and the next kill need not wait for it. Never both instances
    of one service at once: what is tested is taking over mid-message, not an outage."""
    loop = asyncio.get_running_loop()
    restarts: list[asyncio.Task[None]] = []

    async def restart_later(victim: ServiceProcess) -> None:
        await asyncio.sleep(rng.uniform(0.5, 3.0))
        await start_until_healthy(victim, figures)
        figures.service_restarts += 1
        down.discard(victim.name)

    try:
        while figures.kills < max_kills:
            await asyncio.sleep(rng.uniform(2.0, 6.0))
            if loop.time() >= until:
                break
            # A simulator is the whole outside world of its kind (one process, no twin):
            # it is the victim about one kill in SIMULATOR_KILL_SHARE, not one in eight.
            outside = rng.random() < SIMULATOR_KILL_SHARE
            candidates = [
                i
                for i in stack.instances
                if i.name not in down and (i.name in SIMULATORS) == outside
            ]
            if not candidates:
                continue
            victim = rng.choice(candidates)
            victim.kill()
            down.add(victim.name)
            figures.kills += 1
            figures.note(f"SIGKILL {instance_label(victim)}")
            restarts.append(asyncio.create_task(restart_later(victim)))
    finally:
        await asyncio.gather(*restarts)


async def restart_the_broker_once(
    stack: Stack, at: float, rng: random.Random, figures: ChaosFigures
) -> None:
    """A crash (SIGKILL, no clean shutdown), then the same broker on the same ports and data."""
    assert isinstance(stack.broker, LocalKafka)
    await asyncio.sleep(max(0.0, at - asyncio.get_running_loop().time()))
    await asyncio.to_thread(stack.broker.kill)
    figures.note("SIGKILL broker")
    await asyncio.sleep(rng.uniform(1.0, 3.0))
    await asyncio.to_thread(stack.broker.start, 90.0)
    figures.broker_restarts += 1
    figures.note("broker back")


async def deliver_a_sample_of_messages_again(
    stack: Stack, until: float, max_duplicates: int, rng: random.Random, figures: ChaosFigures
) -> None:
    """What a consumer sees when a producer retries or an offset commit is lost: a message
    it has already had, again. Taps the consumed topics and re-publishes a few of the
    messages seen so far, now and then (never the malformed ones, counted elsewhere)."""
    loop = asyncio.get_running_loop()
    per_round = max(1, round(max_duplicates / max(1.0, until - loop.time())))
    tap = AIOKafkaConsumer(
        *CONSUMED_TOPICS,
        **stack.kafka.options(),
        group_id=None,
        auto_offset_reset="latest",
    )
    producer = AIOKafkaProducer(**stack.kafka.options(), acks="all", request_timeout_ms=5_000)
    await tap.start()
    await producer.start()
    seen: deque[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = deque(maxlen=2000)
    marker = MARKER_PREFIX.encode()
    try:
        while loop.time() < until and figures.duplicates_injected < max_duplicates:
            batch = await tap.getmany(timeout_ms=1000)
            seen.extend(
                (r.topic, r.key, r.value, list(r.headers or ()))
                for records in batch.values()
                for r in records
                if r.value is not None and marker not in r.value
            )
            wanted = min(per_round, max_duplicates - figures.duplicates_injected, len(seen))
            for topic, key, value, headers in rng.sample(list(seen), wanted):
                try:
                    await producer.send_and_wait(topic, value, key=key, headers=headers)
                except (KafkaError, TimeoutError):
                    continue  # the broker is down: this one is simply not injected
                figures.duplicates_injected += 1
    finally:
        await tap.stop()
        await producer.stop()


async def bring_back_every_instance(stack: Stack, figures: ChaosFigures) -> None:
    """After the chaos every instance runs again, so the saga can finish."""
    for instance in stack.instances:
        if instance.process is None or instance.process.poll() is not None:
            figures.note(f"{instance_label(instance)} found down after the chaos")
            await start_until_healthy(instance, figures)


async def start_until_healthy(instance: ServiceProcess, figures: ChaosFigures) -> None:
    for attempt in range(1, START_ATTEMPTS + 1):
        instance.start()
        try:
            await asyncio.to_thread(instance.wait_healthy, HEALTHY_WITHIN_S)
        except (RuntimeError, TimeoutError) as error:
            instance.kill()
            figures.note(f"{instance_label(instance)} did not start (attempt {attempt}): {error}")
            await asyncio.sleep(2.0)
        else:
            figures.note(f"{instance_label(instance)} healthy again")
            return
    raise RuntimeError(f"{instance_label(instance)} did not come back in {START_ATTEMPTS} starts")
