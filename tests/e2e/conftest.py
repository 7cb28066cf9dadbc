"""The three services as separate processes against the real broker and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from deploy.local.kafka import free_port
from deploy.local.processes import SERVICES, ServiceProcess
from tests.infra import KafkaUnderTest, PostgresUnderTest


@pytest.fixture(scope="module")
async def service_processes(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, ServiceProcess]]:
    logs = tmp_path_factory.mktemp("service-logs")
    processes = {
        name: ServiceProcess(
            name,
            free_port(),
            env={
                "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
                "DATABASE_URL": await postgres.create_database(name),
            },
            log_path=logs / f"{name}.log",
        )
        for name in SERVICES
    }
    try:
        for process in processes.values():
            process.start()
        for process in processes.values():
            process.wait_healthy(timeout=90)
        yield processes
    finally:
        for process in processes.values():
            process.stop()
        _print_logs_on_failure(logs)


def _print_logs_on_failure(logs: Path) -> None:
    # Shown by pytest only for failing tests: the services' own account of what happened.
    for log in sorted(logs.glob("*.log")):
        print(f"----- {log.name} (last 30 lines) -----")
        print("\n".join(log.read_text(errors="replace").splitlines()[-30:]))


@pytest.fixture
async def producer(kafka: KafkaUnderTest) -> AsyncIterator[AIOKafkaProducer]:
    """A publisher as an internal system would be: plain aiokafka, acks=all."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()
