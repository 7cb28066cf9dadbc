"""Which Kafka and PostgreSQL the tests run against, in this order of preference:

1. `KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL` when set (a broker and server you run);
2. testcontainers, when a Docker engine answers (the docker CLI alone is not one);
3. local processes: Kafka from Maven Central jars, PostgreSQL from the distribution.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from deploy.local.kafka import LocalKafka, free_port, kafka_version
from deploy.local.postgres import scratch_postgres, server_version

KAFKA_IMAGE = "apache/kafka:4.1.1"
POSTGRES_IMAGE = "postgres:16-alpine"


def docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return info.returncode == 0


@dataclass(frozen=True)
class KafkaUnderTest:
    bootstrap_servers: str
    description: str
    local: LocalKafka | None = None  # set when we own the process (fault tests restart it)


@contextmanager
def kafka_under_test(data_dir: Path) -> Iterator[KafkaUnderTest]:
    if servers := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield KafkaUnderTest(servers, f"external broker at {servers} (KAFKA_BOOTSTRAP_SERVERS)")
    elif docker_engine_answers():
        with _kafka_container() as servers:
            yield KafkaUnderTest(servers, f"testcontainers {KAFKA_IMAGE}")
    else:
        with LocalKafka(data_dir) as kafka:
            description = f"local process: Apache Kafka {kafka_version()} (KRaft)"
            yield KafkaUnderTest(kafka.bootstrap_servers, description, kafka)


@contextmanager
def _kafka_container() -> Iterator[str]:
    """The official apache/kafka image, advertising the host port it is published on."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    port = free_port()
    container = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(9092, port)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://localhost:{port}")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
    )
    with container:
        wait_for_logs(container, "Kafka Server started", timeout=120)
        yield f"localhost:{port}"


@dataclass(frozen=True)
class PostgresUnderTest:
    """A PostgreSQL server on which each test creates databases of its own."""

    admin_url: str
    description: str

    async def create_database(self, prefix: str = "t") -> str:
        """A new empty database with a random name; its SQLAlchemy (asyncpg) URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        url = make_url(self.admin_url)
        conn = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return url.set(database=name).render_as_string(hide_password=False)


@contextmanager
def postgres_under_test() -> Iterator[PostgresUnderTest]:
    if url := os.environ.get("DATABASE_URL"):
        yield PostgresUnderTest(url, "external server (DATABASE_URL)")
    elif docker_engine_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer(POSTGRES_IMAGE, driver="asyncpg") as container:
            yield PostgresUnderTest(
                container.get_connection_url(), f"testcontainers {POSTGRES_IMAGE}"
            )
    else:
        # Not in pytest's tmp folders: they are closed to the postgres user.
        with scratch_postgres("test") as pg:
            yield PostgresUnderTest(pg.url(), f"local process: {server_version()}")


def describe_choice() -> str:
    """Which infrastructure the integration and e2e tests will use, before they start it."""
    kafka = "KAFKA_BOOTSTRAP_SERVERS" if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") else None
    postgres = "DATABASE_URL" if os.environ.get("DATABASE_URL") else None
    fallback = "testcontainers" if docker_engine_answers() else "local processes"
    return f"Kafka: {kafka or fallback}; PostgreSQL: {postgres or fallback}"
