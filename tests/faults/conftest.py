"""The stack for the fault suite: the real local broker, PostgreSQL, six service processes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from tests.faults.report import RESULTS
from tests.faults.stack import SUSPENDED_ICCIDS, Stack, start_stack, stop_stack
from tests.infra import PostgresUnderTest


@pytest.fixture(scope="module")
async def stack(
    postgres: PostgresUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    # Logs outlive pytest's temporary folders: a failed 3000-order run is read afterwards.
    log_dir = RESULTS / f"faults-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-logs"
    # While the broker is down our own clients log every failed reconnect: hundreds of lines.
    aiokafka_log = logging.getLogger("aiokafka")
    level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)
    try:
        broker_dir = tmp_path_factory.mktemp("faults-broker")
        running = await start_stack(broker_dir, postgres, log_dir, SUSPENDED_ICCIDS)
        try:
            yield running
        finally:
            stop_stack(running)
            print(f"service logs: {log_dir}")
    finally:
        aiokafka_log.setLevel(level)
