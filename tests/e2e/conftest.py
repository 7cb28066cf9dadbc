"""The three services as separate processes on the real broker, on PostgreSQL and on
SQLite, talking HTTP to the outside world's simulators (Stripe's API, the carrier's),
processes of their own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaProducer

from deploy.local.kafka import free_port
from deploy.local.outside_world import SIMULATORS
from deploy.local.processes import (
    OPERATOR,
    SERVICES,
    ServiceProcess,
    running,
    service_process,
    simulator_processes,
)
from shared.kafka_access import ADMIN, CARRIER, PUBLISHER
from tests.factories import random_iccid
from tests.infra import KafkaUnderTest, PostgresUnderTest

# A line the simulated carrier reports as suspended: its top-ups fail for good.
SUSPENDED_ICCID = random_iccid()
PAYMENT_TIMEOUT_S = 6

SIMULATION = {
    "PAYMENT_TIMEOUT_S": str(PAYMENT_TIMEOUT_S),
    "EXPIRY_SWEEP_INTERVAL_S": "0.5",
    "PROVIDER_LATENCY_MS": "20",
    "PROVIDER_CONFIRM_AFTER_S": "1",
    "PROVIDER_HANG_S": "3",  # a lost answer is held longer than payments waits for it
    "STRIPE_TIMEOUT_S": "2",
    "SETTLE_INTERVAL_S": "0.3",
    "CARRIER_LATENCY_MS": "20",
    "CARRIER_HANG_S": "3",  # as the provider's: longer than provisioning waits
    "CARRIER_TIMEOUT_S": "2",
    # A top-up the carrier gave up (its deadline) may be sent again soon after, so that a
    # slow moment on a busy machine does not hold a test's order for minutes.
    "CARRIER_REQUEST_DEADLINE_S": "3",
    "CARRIER_IN_FLIGHT_S": "6",
    "CARRIER_SUSPENDED_ICCIDS": SUSPENDED_ICCID,
    "RETRY_INTERVAL_S": "0.3",
    # Usage, alerts and auto-renewal: the tests publish the carrier's usage reports.
    "LINE_SWEEP_INTERVAL_S": "0.5",
    "AUTO_RENEWAL_MAX_ATTEMPTS": "2",
    "AUTO_RENEWAL_RETRY_DELAY_S": "1",
}


@dataclass(frozen=True)
class Stack:
    services: dict[str, ServiceProcess]
    simulators: dict[str, ServiceProcess]  # the outside world: Stripe's API, the carrier's


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
async def stack(
    request: pytest.FixtureRequest,
    kafka: KafkaUnderTest,
    postgres: PostgresUnderTest,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    """The three services and the two simulators they talk HTTP to, on one backend."""
    backend: str = request.param
    folder = tmp_path_factory.mktemp(f"stack-{backend}")

    async def database(name: str) -> str:
        if backend == "sqlite":
            return f"sqlite+aiosqlite:///{folder / name}.db"
        return await postgres.create_database(name)

    processes = {
        name: service_process(
            name,
            kafka.bootstrap_servers,
            await database(name),
            SIMULATION | kafka.env(name),
            folder / f"{name}.log",
        )
        for name in SERVICES
    }
    simulators = simulator_processes(
        {name: [process] for name, process in processes.items()},
        {name: await database(name) for name in SIMULATORS},
        SIMULATION,
        folder,
        kafka.env(CARRIER),
    )
    with running([*simulators, *processes.values()]):
        yield Stack(processes, {s.name: s for s in simulators})


@pytest.fixture(scope="module")
def services(stack: Stack) -> dict[str, ServiceProcess]:
    return stack.services


@pytest.fixture(scope="module")
def simulators(stack: Stack) -> dict[str, ServiceProcess]:
    return stack.simulators


@asynccontextmanager
async def producer_as(kafka: KafkaUnderTest, principal: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(**kafka.options(principal), acks="all")
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


@pytest.fixture
async def producer(kafka: KafkaUnderTest) -> AsyncIterator[AIOKafkaProducer]:
    """A publisher as an internal system would be: plain aiokafka, acks=all, signed in as
    the publisher (it may write orders.commands.v1 and nothing else)."""
    async with producer_as(kafka, PUBLISHER) as producer:
        yield producer


@pytest.fixture
async def carrier(kafka: KafkaUnderTest) -> AsyncIterator[AIOKafkaProducer]:
    """The carrier's usage feed, signed in as the carrier."""
    async with producer_as(kafka, CARRIER) as producer:
        yield producer


@pytest.fixture
async def any_party(kafka: KafkaUnderTest) -> AsyncIterator[AIOKafkaProducer]:
    """A producer that may write every topic (the super user), for hostile messages on
    each topic a service consumes."""
    async with producer_as(kafka, ADMIN) as producer:
        yield producer


@pytest.fixture(scope="module")
def operator(
    services: dict[str, ServiceProcess],
    kafka: KafkaUnderTest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceProcess]:
    """The operator service on the stack of `services`."""
    process = ServiceProcess(
        OPERATOR,
        free_port(),
        env={
            **kafka.env(OPERATOR),  # the broker, and the operator's sign-in there
            **{f"{name.upper()}_URL": service.base_url for name, service in services.items()},
        },
        log_path=tmp_path_factory.mktemp("api") / "operator.log",
    )
    with running([process]):
        yield process
