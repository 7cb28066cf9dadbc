"""What the benchmark runs on: a broker and a PostgreSQL (fsync on) of its own, then either
the three raw relay processes or the three services, one process each, with the outside
world's two simulators beside them (their CPU is reported apart: it is not ours)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from deploy.local.kafka import JVM_FLAGS, REPO_ROOT, LocalKafka
from deploy.local.outside_world import SIMULATORS
from deploy.local.postgres import LocalPostgres, scratch_postgres
from deploy.local.processes import SERVICES, running, service_process, simulator_processes
from tests.bench import raw_relay, statements
from tests.faults.stack import Stack

# The C1-only JIT makes the broker start faster and run slower: not for a load test.
BROKER_JVM_FLAGS = tuple(flag for flag in JVM_FLAGS if flag != "-XX:TieredStopAtLevel=1")
HEALTHY_WITHIN_S = 120.0


def service_env(simulator_latency_ms: float) -> dict[str, str]:
    """The outside world answers in about `simulator_latency_ms` (its latency is not ours);
    no order may expire or be nudged as stuck while the load queues up."""
    return {
        "PROVIDER_LATENCY_MS": str(int(simulator_latency_ms)),
        "CARRIER_LATENCY_MS": str(simulator_latency_ms),
        "PAYMENT_TIMEOUT_S": "3600",
        "STUCK_AFTER_S": "3600",
        "LOG_LEVEL": "WARNING",
    }


@contextmanager
def broker() -> Iterator[LocalKafka]:
    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as data_dir:
        kafka = LocalKafka(Path(data_dir), jvm_flags=BROKER_JVM_FLAGS)
        with kafka:
            yield kafka


@contextmanager
def postgres() -> Iterator[LocalPostgres]:
    # Not in /tmp: PostgreSQL runs as its own user, which /tmp's folders may not let in.
    # pg_stat_statements: the statements and transactions per saga (tests/bench/statements.py).
    with scratch_postgres("bench", fsync=True, settings=statements.SERVER_SETTINGS) as server:
        yield server


@contextmanager
def services(
    kafka: LocalKafka, server: LocalPostgres, log_dir: Path, simulator_latency_ms: float
) -> Iterator[Stack]:
    """One process of each service and of each simulator (the outside world, processes of
    their own), each on a fresh database, until they are all healthy."""
    suffix = uuid.uuid4().hex[:6]
    databases = {
        name: server.create_database(f"bench_{name}_{suffix}") for name in (*SERVICES, *SIMULATORS)
    }
    services = {
        name: [
            service_process(
                name,
                kafka.bootstrap_servers,
                databases[name],
                service_env(simulator_latency_ms),
                log_dir / f"{name}.log",
            )
        ]
        for name in SERVICES
    }
    simulators = simulator_processes(
        services,
        databases,
        service_env(simulator_latency_ms),
        log_dir,
        {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers},
    )
    instances = [*(group[0] for group in services.values()), *simulators]
    with running(instances, healthy_within=HEALTHY_WITHIN_S):
        yield Stack(kafka, databases, instances, log_dir)


@dataclass
class RelayProcess:
    role: str
    process: subprocess.Popen[bytes]


@contextmanager
def raw_relays(kafka: LocalKafka, log_dir: Path) -> Iterator[list[RelayProcess]]:
    """`python -m tests.bench.raw_relay <role>` for each role; stopped (SIGTERM) on the way out."""
    log_dir.mkdir(parents=True, exist_ok=True)
    started: list[RelayProcess] = []
    try:
        for role in raw_relay.HOPS:
            with (log_dir / f"raw-{role}.log").open("ab") as log:
                command = [
                    sys.executable,
                    "-m",
                    "tests.bench.raw_relay",
                    role,
                    "--bootstrap-servers",
                    kafka.bootstrap_servers,
                ]
                process = subprocess.Popen(
                    command,
                    cwd=REPO_ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                    start_new_session=True,
                )
            started.append(RelayProcess(role, process))
        yield started
    finally:
        for relay in started:
            relay.process.terminate()
        gone = {relay.process.pid for relay in started}
        _, alive = psutil.wait_procs([psutil.Process(pid) for pid in gone], timeout=10)
        for process in alive:
            process.kill()
        for relay in started:
            relay.process.wait()
