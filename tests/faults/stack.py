"""The stack the faults are injected into: a broker of its own (or a cluster of three), a
fresh PostgreSQL database per service (on the suite's own server, for the cluster run,
which restarts it), two processes of every service sharing that database and its
consumer groups, and the outside world's two simulators (one process each, a database of
their own), tuned to finish orders in seconds."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from deploy.local.kafka import LocalKafka
from deploy.local.kafka_cluster import LocalKafkaCluster
from deploy.local.outside_world import SIMULATORS
from deploy.local.postgres import LocalPostgres
from deploy.local.processes import SERVICES, ServiceProcess, service_process, simulator_processes
from deploy.local.stack import cluster_replication
from shared.kafka_access import CARRIER
from shared.kafka_grants import new_passwords
from tests.factories import random_iccid
from tests.infra import KafkaUnderTest, PostgresUnderTest

INSTANCES_PER_SERVICE = 2

# Lines the simulated carrier reports as suspended: top-ups on them fail, payments refund.
SUSPENDED_ICCIDS = [random_iccid() for _ in range(3)]
HEALTHY_WITHIN_S = 120.0

# Small enough that `tok_pending_forever` orders expire while the suite runs, large enough
# that most card orders outlive the stalls the chaos causes (a killed consumer's partitions
# wait out its session timeout, about 10 s, and the broker restart adds its own), so the
# happy path is tested too, not only the late capture and its refund.
PAYMENT_TIMEOUT_S = float(os.environ.get("FAULTS_PAYMENT_TIMEOUT_S", "25"))


def simulation(suspended_iccids: list[str]) -> dict[str, str]:
    """The simulators and background loops at test speed, with failures switched on:
    lost provider answers (unknown outcomes), carrier timeouts and busy signals (retries)."""
    return {
        "PAYMENT_TIMEOUT_S": str(PAYMENT_TIMEOUT_S),
        "EXPIRY_SWEEP_INTERVAL_S": "0.5",
        "PROVIDER_LATENCY_MS": "20",
        "PROVIDER_CONFIRM_AFTER_S": "1",
        "PROVIDER_TIMEOUT_RATE": "0.05",
        # A lost answer is held longer than payments waits for it; each one holds its
        # partition that long, so the waits are short (the answers take ~20 ms).
        "PROVIDER_HANG_S": "1.5",
        "STRIPE_TIMEOUT_S": "1",
        "SETTLE_INTERVAL_S": "0.3",
        "SETTLE_BACKOFF_BASE_S": "0.3",
        "SETTLE_BACKOFF_MAX_S": "2",
        # A row whose caller was SIGKILLed mid-call is taken over after this long.
        "NEW_GRACE_S": "3",
        "CARRIER_LATENCY_MS": "20",
        "CARRIER_HANG_S": "1.5",
        "CARRIER_TIMEOUT_S": "1",
        "CARRIER_TIMEOUT_RATE": "0.05",
        "CARRIER_TRANSIENT_FAILURE_RATE": "0.05",
        # The carrier gives up a top-up it cannot place within 3 s; provisioning sends a key
        # the carrier does not know again only once its last send is older than that.
        "CARRIER_REQUEST_DEADLINE_S": "3",
        "CARRIER_IN_FLIGHT_S": "8",
        "CARRIER_SUSPENDED_ICCIDS": ",".join(suspended_iccids),
        "RETRY_INTERVAL_S": "0.3",
        "RETRY_BACKOFF_BASE_S": "0.2",
        "RETRY_BACKOFF_MAX_S": "2",
    }


@dataclass
class Stack:
    broker: LocalKafka | LocalKafkaCluster
    databases: dict[str, str]  # service name -> SQLAlchemy URL of its database
    instances: list[ServiceProcess]  # the simulators' too: they are killed as well
    log_dir: Path
    postgres: LocalPostgres | None = None  # the server, when the suite owns it

    @property
    def bootstrap_servers(self) -> str:
        return self.broker.bootstrap_servers

    @property
    def kafka(self) -> KafkaUnderTest:
        return kafka_of(self.broker)


def kafka_of(broker: LocalKafka | LocalKafkaCluster) -> KafkaUnderTest:
    """The broker with its principals: the services' and the suite's own (the admin)."""
    passwords = broker.passwords or {}
    return KafkaUnderTest(broker.bootstrap_servers, "the faults' broker", passwords=passwords)


async def start_stack(
    broker_dir: Path,
    postgres: PostgresUnderTest | LocalPostgres,
    log_dir: Path,
    suspended: list[str],
    *,
    brokers: int = 1,
) -> Stack:
    """A broker of the suite's own (it kills and restarts it, and no consumer group or
    message of an earlier test may mix with the run), or a cluster of `brokers`, six
    service processes on it."""
    passwords = new_passwords()  # SASL/SCRAM and ACLs on
    broker: LocalKafka | LocalKafkaCluster = (
        LocalKafka(broker_dir, passwords=passwords)
        if brokers == 1
        else LocalKafkaCluster(broker_dir, brokers, passwords=passwords)
    )
    await asyncio.to_thread(broker.start, 90.0)
    kafka = kafka_of(broker)
    databases = {
        name: await _database(postgres, f"faults_{name}") for name in (*SERVICES, *SIMULATORS)
    }
    services = {
        name: [
            service_process(
                name,
                broker.bootstrap_servers,
                databases[name],
                simulation(suspended) | kafka.env(name) | cluster_replication(brokers),
                log_dir / f"{name}-{number}.log",
            )
            for number in range(1, INSTANCES_PER_SERVICE + 1)
        ]
        for name in SERVICES
    }
    # One of each simulator: the outside world, killed and restarted like the rest.
    simulators = simulator_processes(
        services, databases, simulation(suspended), log_dir, kafka.env(CARRIER)
    )
    instances = [*simulators, *(i for group in services.values() for i in group)]
    own = postgres if isinstance(postgres, LocalPostgres) else None
    stack = Stack(broker, databases, instances, log_dir, own)
    for instance in instances:
        instance.start()
    try:
        await asyncio.gather(
            *(asyncio.to_thread(i.wait_healthy, HEALTHY_WITHIN_S) for i in instances)
        )
    except BaseException:
        stop_stack(stack)
        raise
    return stack


async def _database(postgres: PostgresUnderTest | LocalPostgres, name: str) -> str:
    if isinstance(postgres, LocalPostgres):
        return await asyncio.to_thread(postgres.create_database, name)
    return await postgres.create_database(name)


def stop_stack(stack: Stack) -> None:
    for instance in reversed(stack.instances):  # the services before their simulators
        instance.stop()
    stack.broker.stop()


def instance_label(instance: ServiceProcess) -> str:
    """`payments-2`: the service and which of its instances, from the log file name."""
    return instance.log_path.stem if instance.log_path is not None else instance.name
