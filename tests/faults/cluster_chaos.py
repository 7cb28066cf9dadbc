"""The chaos only a cluster and a database of the suite's own allow, while the load runs:
the leader of a busy partition SIGKILLed and restarted, later the leader of another (a
second broker, once the first is back and in sync), once the quorum's active controller;
PostgreSQL restarted twice (a fast shutdown, then an immediate one: crash recovery); one
service instance paused (SIGSTOP) past its consumer group's session timeout, so that the
group moves on without it, then resumed: a fenced zombie that tries to commit."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from dataclasses import dataclass

import httpx
import psutil  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient

from deploy.local.kafka import LocalKafka
from deploy.local.kafka_cluster import LocalKafkaCluster
from deploy.local.outside_world import SIMULATORS
from deploy.local.postgres import LocalPostgres
from deploy.local.processes import ServiceProcess
from tests.faults.chaos_figures import ChaosFigures
from tests.faults.load import CONSUMED_TOPICS
from tests.faults.stack import Stack, instance_label

# aiokafka's session timeout (10 s) and then some: the group has surely moved on.
PAUSE_S = 16.0
IN_SYNC_WITHIN_S = 120.0
HEALTHY_AGAIN_WITHIN_S = 60.0
ZOMBIE_WATCH_S = 5.0  # after SIGCONT: what the woken instance tries


@dataclass(frozen=True)
class ClusterChaosPlan:
    """When each fault comes, in seconds after the load starts."""

    first_leader_at: float
    second_leader_at: float
    controller_at: float
    fast_restart_at: float
    immediate_restart_at: float
    pause_at: float

    @classmethod
    def over(cls, seconds: float, rng: random.Random) -> ClusterChaosPlan:
        def at(low: float, high: float) -> float:
            return seconds * rng.uniform(low, high)

        return cls(
            first_leader_at=at(0.10, 0.20),
            second_leader_at=at(0.45, 0.55),
            controller_at=at(0.75, 0.85),
            fast_restart_at=at(0.25, 0.35),
            immediate_restart_at=at(0.60, 0.70),
            pause_at=at(0.35, 0.45),
        )


async def unleash_cluster_chaos(
    stack: Stack,
    seconds: float,
    rng: random.Random,
    figures: ChaosFigures,
    down: set[str],
) -> None:
    """Every fault of the plan, each once, over `seconds`; `down`: the services the other
    chaos must leave alone meanwhile (the paused one's)."""
    cluster, postgres = stack.broker, stack.postgres
    assert isinstance(cluster, LocalKafkaCluster), "the cluster run's stack"
    assert postgres is not None, "the cluster run owns its PostgreSQL"
    plan = ClusterChaosPlan.over(seconds, rng)
    figures.note(f"cluster chaos plan: {plan}")
    started = asyncio.get_running_loop().time()

    async def when(at: float) -> None:
        await asyncio.sleep(max(0.0, started + at - asyncio.get_running_loop().time()))

    async def brokers() -> None:
        await when(plan.first_leader_at)
        first = await kill_a_busy_leader(stack, cluster, set(), rng, figures)
        await when(plan.second_leader_at)
        await kill_a_busy_leader(stack, cluster, {first}, rng, figures)
        await when(plan.controller_at)
        await kill_the_active_controller(stack, cluster, rng, figures)

    async def database() -> None:
        await when(plan.fast_restart_at)
        await restart_postgres(stack, postgres, rng, figures, immediate=False)
        await when(plan.immediate_restart_at)
        await restart_postgres(stack, postgres, rng, figures, immediate=True)

    async def pause() -> None:
        await when(plan.pause_at)
        await pause_a_service_instance(stack, rng, figures, down)

    await asyncio.gather(brokers(), database(), pause())


async def kill_a_busy_leader(
    stack: Stack,
    cluster: LocalKafkaCluster,
    spared: set[int],
    rng: random.Random,
    figures: ChaosFigures,
) -> int:
    """SIGKILL the broker leading a partition of a consumed topic (all busy under the load),
    one not in `spared` if any; start it again, and wait until every replica is in sync."""
    leaders = await partition_leaders(stack)
    choices = sorted({n for n in leaders.values() if n >= 0 and n not in spared}) or sorted(
        {n for n in leaders.values() if n >= 0}
    )
    node_id = rng.choice(choices)
    led = sorted(f"{t}[{p}]" for (t, p), n in leaders.items() if n == node_id)
    killed = time.monotonic()
    await _crash_and_restart(cluster.node(node_id), rng)
    figures.leader_kills += 1
    figures.note(f"SIGKILL broker {node_id}, leader of {', '.join(led[:4])}...; back")
    await _in_sync_again(stack, figures, f"broker {node_id}", killed)
    return node_id


async def kill_the_active_controller(
    stack: Stack, cluster: LocalKafkaCluster, rng: random.Random, figures: ChaosFigures
) -> None:
    node_id = active_controller(cluster)
    killed = time.monotonic()
    await _crash_and_restart(cluster.node(node_id), rng)
    figures.controller_kills += 1
    figures.note(f"SIGKILL broker {node_id}, the active controller; back")
    await _in_sync_again(stack, figures, f"controller {node_id}", killed)


def active_controller(cluster: LocalKafkaCluster) -> int:
    """The quorum's leader, as the live nodes' quorum-state files say (the most recent
    epoch wins): clients are not told which controller is active."""
    known: list[tuple[int, int]] = []
    for node in cluster.nodes:
        state = node.data_dir / "logs" / "__cluster_metadata-0" / "quorum-state"
        if node.running and state.exists():
            found = json.loads(state.read_text())
            if int(found.get("leaderId", -1)) > 0:
                known.append((int(found["leaderEpoch"]), int(found["leaderId"])))
    if not known:
        raise RuntimeError("no node knows the quorum's leader")
    return max(known)[1]


async def partition_leaders(stack: Stack) -> dict[tuple[str, int], int]:
    admin = AIOKafkaAdminClient(**stack.kafka.options())
    await admin.start()
    try:
        described = await admin.describe_topics(list(CONSUMED_TOPICS))
    finally:
        await admin.close()
    return {
        (str(t["topic"]), int(p["partition"])): int(p["leader"])
        for t in described
        for p in t["partitions"]
    }


async def _crash_and_restart(node: LocalKafka, rng: random.Random) -> None:
    """Down for longer than the brokers' session timeout (3 s): the controller fences it,
    its partitions get new leaders and their in-sync replicas shrink, as for a real loss."""
    await asyncio.to_thread(node.kill)
    await asyncio.sleep(rng.uniform(6.0, 10.0))
    await asyncio.to_thread(node.start, 90.0)


async def _in_sync_again(stack: Stack, figures: ChaosFigures, who: str, killed: float) -> None:
    """Wait until every replica of the consumed topics is in sync; note how long after the
    kill (the broker was down 6-10 s of it)."""
    started = time.monotonic()
    while time.monotonic() - started < IN_SYNC_WITHIN_S:
        admin = AIOKafkaAdminClient(**stack.kafka.options())
        try:
            await admin.start()
            described = await admin.describe_topics(list(CONSUMED_TOPICS))
        except Exception:  # the cluster is still electing: ask again
            described = []
        finally:
            await admin.close()
        partitions = [p for t in described for p in t["partitions"]]
        if partitions and all(len(p["isr"]) == len(p["replicas"]) for p in partitions):
            seconds = time.monotonic() - killed
            figures.recoveries[who] = round(seconds, 1)
            figures.note(f"every replica in sync again {seconds:.1f}s after {who} was killed")
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"replicas still out of sync {IN_SYNC_WITHIN_S:.0f}s after {who} was back")


async def restart_postgres(
    stack: Stack,
    postgres: LocalPostgres,
    rng: random.Random,
    figures: ChaosFigures,
    *,
    immediate: bool,
) -> None:
    """Stop PostgreSQL, and start it again after a moment; what /health said meanwhile,
    and how long after the start the services said `ok` again."""
    how = "immediate" if immediate else "fast"
    await asyncio.to_thread(postgres.stop, 20.0, immediate=immediate)
    figures.note(f"PostgreSQL stopped ({how} shutdown)")
    await asyncio.sleep(rng.uniform(1.0, 3.0))
    figures.health_without_postgres.append(await _healths(stack))
    started = time.monotonic()
    await asyncio.to_thread(postgres.start, 90.0)
    figures.postgres_restarts += 1
    # Back once no service says it cannot reach it (`degraded`: it does, and is catching up).
    while "unavailable" in (await _healths(stack)).values():
        if time.monotonic() - started > HEALTHY_AGAIN_WITHIN_S:
            raise RuntimeError(f"services still unavailable {HEALTHY_AGAIN_WITHIN_S:.0f}s "
                               f"after PostgreSQL was back ({how} shutdown before)")  # fmt: skip
        await asyncio.sleep(0.5)
    figures.recoveries[f"postgres ({how})"] = round(time.monotonic() - started, 1)
    figures.note(f"PostgreSQL back ({how} shutdown before), the services reach it again")


async def _healths(stack: Stack) -> dict[str, str]:
    """Each service instance's /health status ("down": not running now; "paused": stopped
    by SIGSTOP, it answers nothing)."""
    async with httpx.AsyncClient(timeout=5.0) as client:

        async def status(instance: ServiceProcess) -> str:
            if instance.name in SIMULATORS:
                return "not asked"
            if not _alive(instance):
                return "down"
            if _paused(instance):
                return "paused"
            try:
                return str((await client.get(f"{instance.base_url}/health")).json()["status"])
            except (httpx.HTTPError, ValueError, KeyError):
                return "no answer"

        found = await asyncio.gather(*(status(i) for i in stack.instances))
    return {instance_label(i): s for i, s in zip(stack.instances, found, strict=True)
            if s != "not asked"}  # fmt: skip


async def pause_a_service_instance(
    stack: Stack, rng: random.Random, figures: ChaosFigures, down: set[str]
) -> None:
    """SIGSTOP a service instance (never a simulator) past its group's session timeout,
    then SIGCONT: the group has given its partitions to the other instance meanwhile."""
    waited = time.monotonic()
    while not (candidates := _pausable(stack, down)):
        # Every service has an instance down: wait until one is back whole.
        if time.monotonic() - waited > IN_SYNC_WITHIN_S:
            raise RuntimeError("no service instance to pause: every service had one down")
        await asyncio.sleep(0.5)
    victim = rng.choice(candidates)
    assert victim.process is not None
    down.add(victim.name)
    try:
        victim.process.send_signal(signal.SIGSTOP)
        figures.note(f"SIGSTOP {instance_label(victim)}")
        await asyncio.sleep(PAUSE_S)
        logged = _log_size(victim)
        victim.process.send_signal(signal.SIGCONT)
        figures.pauses += 1
        figures.note(f"SIGCONT {instance_label(victim)} after {PAUSE_S:.0f}s")
        await asyncio.sleep(ZOMBIE_WATCH_S)
        # The zombie's commits of what it held, refused by the group that moved on.
        refused = _log_since(victim, logged).count("offsets not committed")
        figures.zombie_commits_refused += refused
        figures.note(f"{instance_label(victim)}: {refused} commits refused after it woke")
    finally:
        down.discard(victim.name)


def _log_size(instance: ServiceProcess) -> int:
    path = instance.log_path
    return path.stat().st_size if path is not None and path.exists() else 0


def _log_since(instance: ServiceProcess, offset: int) -> str:
    if instance.log_path is None or not instance.log_path.exists():
        return ""
    with instance.log_path.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


def _pausable(stack: Stack, down: set[str]) -> list[ServiceProcess]:
    return [i for i in stack.instances if i.name not in SIMULATORS and i.name not in down
            and _alive(i)]  # fmt: skip


def _alive(instance: ServiceProcess) -> bool:
    return instance.process is not None and instance.process.poll() is None


def _paused(instance: ServiceProcess) -> bool:
    assert instance.process is not None
    try:
        return bool(psutil.Process(instance.process.pid).status() == psutil.STATUS_STOPPED)
    except psutil.NoSuchProcess:
        return False
