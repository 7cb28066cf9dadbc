"""The stacks for the fault suite: the real local broker, PostgreSQL, six service
processes; or three brokers and a PostgreSQL server of the suite's own (it restarts it)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from deploy.local.kafka_cluster import BROKERS as CLUSTER_BROKERS
from deploy.local.postgres import LocalPostgres, scratch_postgres
from tests.faults.report import RESULTS
from tests.faults.stack import SUSPENDED_ICCIDS, Stack, start_stack, stop_stack
from tests.infra import PostgresUnderTest


@pytest.fixture(scope="module")
async def stack(
    postgres: PostgresUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    async with running_stack(postgres, tmp_path_factory.mktemp("faults-broker")) as running:
        yield running


@pytest.fixture(scope="module")
async def cluster_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """Three brokers, and a PostgreSQL server the suite restarts (fsync on, as in production:
    an immediate shutdown must lose nothing committed)."""
    with scratch_postgres("faults", fsync=True) as server:
        brokers = tmp_path_factory.mktemp("faults-cluster")
        async with running_stack(server, brokers, brokers=CLUSTER_BROKERS) as running:
            yield running


@asynccontextmanager
async def running_stack(
    postgres: PostgresUnderTest | LocalPostgres, broker_dir: Path, *, brokers: int = 1
) -> AsyncIterator[Stack]:
    # Logs outlive pytest's temporary folders: a failed 3000-order run is read afterwards.
    log_dir = RESULTS / f"faults-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-logs"
    # While the broker is down our own clients log every failed reconnect: hundreds of lines.
    aiokafka_log = logging.getLogger("aiokafka")
    level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)
    try:
        running = await start_stack(
            broker_dir, postgres, log_dir, SUSPENDED_ICCIDS, brokers=brokers
        )
        try:
            yield running
        finally:
            stop_stack(running)
            print(f"service logs: {log_dir}")
    finally:
        aiokafka_log.setLevel(level)
