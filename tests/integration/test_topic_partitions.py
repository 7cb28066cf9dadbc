"""KAFKA_PARTITIONS on the real broker: new topics get it; an existing topic keeps its own
partitions (more would move a line's messages out of order) and is reported."""

from __future__ import annotations

import logging
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka import ensure_topics
from tests.infra import KafkaUnderTest

pytestmark = pytest.mark.integration


async def partitions_of(kafka: KafkaUnderTest, topic: str) -> int:
    admin = AIOKafkaAdminClient(**kafka.options())
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return len(described["partitions"])


async def test_a_new_topic_gets_the_setting_and_an_existing_one_keeps_its_count_and_is_reported(
    kafka: KafkaUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    topic = f"partitions-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka.client(), (topic,), partitions=2)
    assert await partitions_of(kafka, topic) == 2

    with caplog.at_level(logging.WARNING, logger="shared.kafka"):
        await ensure_topics(kafka.client(), (topic,), partitions=6)

    assert await partitions_of(kafka, topic) == 2
    [said] = [r.getMessage() for r in caplog.records if topic in r.getMessage()]
    assert "has 2 partitions, KAFKA_PARTITIONS says 6: kept as it is" in said
