"""Topics as the settings say, on the real broker (shared/topic_layout.py): new topics get
KAFKA_PARTITIONS and the replication chosen for the cluster; an existing topic keeps its
own, and what differs from the settings is reported at start-up, in the log and on
/metrics."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared.metrics import TOPIC_BELOW_SETTING, TOPIC_MIN_INSYNC, TOPIC_REPLICATION
from shared.topic_layout import (
    MIN_INSYNC,
    Replication,
    ReplicationError,
    TopicLayout,
    ensure_topics,
)
from tests.infra import KafkaUnderTest

pytestmark = pytest.mark.integration


async def described(kafka: KafkaUnderTest, topic: str) -> tuple[int, int, int]:
    """(partitions, replicas of each, min.insync.replicas) as the broker says, once every
    broker knows the topic (right after its creation, one may not yet)."""
    admin = AIOKafkaAdminClient(**kafka.options())
    await admin.start()
    try:
        for _ in range(50):
            [found] = await admin.describe_topics([topic])
            resource = ConfigResource(ConfigResourceType.TOPIC, topic, {MIN_INSYNC: None})
            [response] = await admin.describe_configs([resource])
            [entries] = [r["config_entries"] for r in response.to_object()["resources"]]
            if entries and found["partitions"]:
                break
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    [min_insync] = [int(e["config_value"]) for e in entries]
    partitions = found["partitions"]
    return len(partitions), min(len(p["replicas"]) for p in partitions), min_insync


def warned_about(caplog: pytest.LogCaptureFixture, topic: str) -> list[str]:
    """The warnings about `topic` (what else is logged depends on the tests run before)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and topic in r.getMessage()
    ]


def shown(gauge: Any, topic: str) -> float:
    return float(gauge.labels(topic)._value.get())


def a_topic() -> str:
    return f"layout-{uuid.uuid4().hex[:8]}"


async def test_a_new_topic_gets_the_partitions_set_and_on_one_broker_one_replica(
    kafka: KafkaUnderTest,
) -> None:
    topic = a_topic()
    replication = await ensure_topics(kafka.client(), (topic,), TopicLayout(partitions=2))
    assert replication == Replication(factor=1, min_insync=1)
    assert await described(kafka, topic) == (2, 1, 1)
    assert (shown(TOPIC_REPLICATION, topic), shown(TOPIC_BELOW_SETTING, topic)) == (1, 0)


async def test_an_existing_topic_keeps_its_partitions_and_the_difference_is_reported(
    kafka: KafkaUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    topic = a_topic()
    await ensure_topics(kafka.client(), (topic,), TopicLayout(partitions=2))
    with caplog.at_level(logging.WARNING, logger="shared.topic_layout"):
        await ensure_topics(kafka.client(), (topic,), TopicLayout(partitions=6))
    assert (await described(kafka, topic))[0] == 2
    [said] = warned_about(caplog, topic)
    assert "has 2 partitions, KAFKA_PARTITIONS says 6: kept as it is" in said


async def test_an_existing_topic_replicated_less_than_the_settings_ask_is_reported_at_start(
    kafka: KafkaUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    topic = a_topic()
    await ensure_topics(kafka.client(), (topic,))
    # As a service set for a three-broker cluster would find it.
    asked = TopicLayout(replication_factor=3, min_insync_replicas=2)
    with caplog.at_level(logging.WARNING, logger="shared.topic_layout"):
        await ensure_topics(kafka.client(), (topic,), asked)
    [said] = warned_about(caplog, topic)
    assert "has 1 replicas and min.insync.replicas 1, below the 3 and 2 asked for" in said
    assert shown(TOPIC_BELOW_SETTING, topic) == 1
    assert (shown(TOPIC_REPLICATION, topic), shown(TOPIC_MIN_INSYNC, topic)) == (1, 1)
    assert await described(kafka, topic) == (3, 1, 1)  # kept as it is


async def test_more_replicas_than_the_brokers_up_refuse_to_create_a_topic_and_say_why(
    kafka: KafkaUnderTest,
) -> None:
    topic = a_topic()
    with pytest.raises(ReplicationError, match=r"need 3 replicas .* the cluster has 1 broker"):
        await ensure_topics(kafka.client(), (topic,), TopicLayout(replication_factor=3))
