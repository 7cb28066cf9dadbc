"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from tests.infra import KafkaUnderTest


@pytest.fixture
async def undecodable(kafka: KafkaUnderTest) -> AsyncIterator[list[tuple[str, int, int]]]:
    """Where a test wrote bytes that are not JSON to a saga topic: deleted afterwards,
    because the topic readers of other tests (tests/integration/harness.py
    messages_about) parse every record of a topic as JSON. Only on a broker this
    session owns: a broker given by KAFKA_BOOTSTRAP_SERVERS is left as it is."""
    written: list[tuple[str, int, int]] = []
    yield written
    if not written or kafka.description.startswith("external"):
        return
    admin = AIOKafkaAdminClient(**kafka.options())
    await admin.start()
    try:
        up_to: dict[TopicPartition, int] = {}
        for topic, partition, offset in written:
            tp = TopicPartition(topic, partition)
            up_to[tp] = max(up_to.get(tp, 0), offset + 1)
        await admin.delete_records({tp: RecordsToDelete(end) for tp, end in up_to.items()})
    finally:
        await admin.close()
