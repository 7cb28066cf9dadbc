"""Which Kafka and PostgreSQL the tests run against, in this order of preference:

1. `KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL` when set (a broker and server you run);
2. testcontainers, when a Docker engine answers (the docker CLI alone is not one);
3. local processes: Kafka from Maven Central jars, PostgreSQL from the distribution.

The broker the tests start (2 and 3) authenticates every client and applies the ACLs of
shared/kafka_access.py, with passwords made for the session: each service runs as its own
principal, and the tests' own readers and writers as the super user `admin`. A broker of
yours (1) is used in plaintext, unless KAFKA_ADMIN_PASSWORD names its super user's
password (SASL/PLAIN, as deploy/local/kafka.py secured_properties sets it up): then the
session makes its principals' users and ACLs on it as well.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from deploy.local.kafka import LocalKafka, free_port, kafka_version, secured_properties
from deploy.local.postgres import scratch_postgres, server_version
from shared.kafka_access import ADMIN, KafkaClient, service_env
from shared.kafka_grants import admin_client, apply_in_thread, new_passwords

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
    # principal -> password, the admin's included; empty: a plaintext broker without ACLs.
    passwords: Mapping[str, str] = field(default_factory=dict)

    @property
    def secured(self) -> bool:
        return bool(self.passwords)

    def client(self, principal: str = ADMIN) -> KafkaClient:
        """Signed in as `principal` (the admin, by default: the tests play every party)."""
        if not self.secured:
            return KafkaClient(self.bootstrap_servers)
        if principal == ADMIN:
            return admin_client(self.bootstrap_servers, self.passwords[ADMIN])
        return client_as(self.bootstrap_servers, principal, self.passwords[principal])

    def options(self, principal: str = ADMIN) -> dict[str, Any]:
        """An aiokafka client's keyword arguments, signed in as `principal`."""
        return self.client(principal).options()

    def env(self, principal: str) -> dict[str, str]:
        """A service process's environment: the broker and who it is there (provisioning's
        simulated carrier too, as the carrier)."""
        env = {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers}
        return env | (service_env(principal, self.passwords) if self.secured else {})

    def settings(self, principal: str) -> dict[str, Any]:
        """ServiceSettings' Kafka fields (`kafka_*`) for a service running as `principal`;
        the rest of `env` (the carrier's) is for the service's own settings class."""
        env = self.env(principal)
        return {key.lower(): value for key, value in env.items() if key.startswith("KAFKA_")}


def client_as(bootstrap_servers: str, principal: str, password: str) -> KafkaClient:
    return KafkaClient(bootstrap_servers, principal, SecretStr(password))


@contextmanager
def kafka_under_test(data_dir: Path) -> Iterator[KafkaUnderTest]:
    if servers := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        description = f"external broker at {servers} (KAFKA_BOOTSTRAP_SERVERS)"
        passwords: dict[str, str] = {}
        if admin_password := os.environ.get("KAFKA_ADMIN_PASSWORD"):
            passwords = {**new_passwords(), ADMIN: admin_password}
            apply_in_thread(servers, admin_password, _users(passwords))
            description += ", with the session's principals and ACLs"
        yield KafkaUnderTest(servers, description, passwords=passwords)
    elif docker_engine_answers():
        passwords = new_passwords()
        with _kafka_container(passwords[ADMIN]) as servers:
            apply_in_thread(servers, passwords[ADMIN], _users(passwords), wait_s=120.0)
            description = f"testcontainers {KAFKA_IMAGE}, SASL/SCRAM and ACLs"
            yield KafkaUnderTest(servers, description, passwords=passwords)
    else:
        passwords = new_passwords()
        with LocalKafka(data_dir, passwords=passwords) as kafka:
            description = (
                f"local process: Apache Kafka {kafka_version()} (KRaft), SASL/SCRAM and ACLs"
            )
            yield KafkaUnderTest(kafka.bootstrap_servers, description, kafka, passwords)


def _users(passwords: Mapping[str, str]) -> dict[str, str]:
    return {name: password for name, password in passwords.items() if name != ADMIN}


def image_env(properties: Mapping[str, str]) -> dict[str, str]:
    """Broker properties as the apache/kafka image reads them from its environment:
    KAFKA_ and the name in upper case, '.' as '_', '_' as '__' and '-' as '___'."""
    return {
        "KAFKA_" + key.replace("_", "__").replace("-", "___").replace(".", "_").upper(): value
        for key, value in properties.items()
    }


@contextmanager
def _kafka_container(admin_password: str) -> Iterator[str]:
    """The official apache/kafka image, advertising the host port it is published on,
    with the local broker's security (SASL listeners, StandardAuthorizer, the admin)."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    port = free_port()
    container = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(9092, port)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "100")  # as deploy/local/kafka.py
    )
    secured = secured_properties(":9092", ":9093", admin_password)
    secured |= {
        "advertised.listeners": f"BROKER://localhost:{port}",
        "listeners": "BROKER://:9092,CONTROLLER://:9093",
    }
    for name, value in image_env(secured).items():
        container = container.with_env(name, value)
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


async def unconsumed(kafka: KafkaUnderTest, groups: Callable[[str], bool]) -> int:
    """Messages the consumer groups `groups` selects have not committed yet, on every
    partition they have committed on: a message published is not a message acted on."""
    options = kafka.options()
    admin = AIOKafkaAdminClient(**options)
    consumer = AIOKafkaConsumer(**options)
    await admin.start()
    await consumer.start()
    try:
        behind = 0
        for listed in await admin.list_consumer_groups():
            if not groups(str(listed[0])):
                continue
            committed = await admin.list_consumer_group_offsets(str(listed[0]))
            if committed:
                ends = await consumer.end_offsets(list(committed))
                behind += sum(max(0, ends[tp] - at.offset) for tp, at in committed.items())
        return behind
    finally:
        await consumer.stop()
        await admin.close()
