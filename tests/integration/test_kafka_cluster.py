"""The local three-broker cluster (deploy/local/kafka_cluster.py), from the same jars as the
single broker, signed in and with ACLs as `make run KAFKA_BROKERS=3` runs it: the topics the
services create on it are replicated three times with two in sync, the audit topic too, and
a message acknowledged while a broker is dead is there to read once it is back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from deploy.local.kafka_cluster import LocalKafkaCluster
from services.operator.dead_letter_store import reader
from services.operator.topics import TopicSampler
from shared import topics
from shared.audit import AUDIT_TOPIC, ensure_audit_topic
from shared.kafka_grants import new_passwords
from shared.metrics import UNDER_REPLICATED
from shared.topic_layout import Replication, TopicLayout, ensure_topics
from tests.infra import KafkaUnderTest
from tests.integration.test_topic_layout import described

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaUnderTest]:
    passwords = new_passwords()
    with LocalKafkaCluster(tmp_path_factory.mktemp("cluster"), passwords=passwords) as running:
        yield KafkaUnderTest(running.bootstrap_servers, "three local brokers", None, passwords)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaCluster]:
    with LocalKafkaCluster(tmp_path_factory.mktemp("plain-cluster")) as running:
        yield running


async def test_topics_made_on_three_brokers_have_three_replicas_and_two_in_sync(
    cluster: KafkaUnderTest,
) -> None:
    saga_topic = topics.ORDERS_COMMANDS
    dead_letters = topics.dead_letter_topic(saga_topic)
    replication = await ensure_topics(cluster.client(), (saga_topic, dead_letters))
    await ensure_audit_topic(cluster.client())
    assert replication == Replication(factor=3, min_insync=2)
    assert await described(cluster, saga_topic) == (3, 3, 2)
    assert await described(cluster, dead_letters) == (3, 3, 2)
    assert await described(cluster, AUDIT_TOPIC) == (1, 3, 2)


async def test_the_settings_choose_another_replication_on_the_cluster(
    cluster: KafkaUnderTest,
) -> None:
    topic = f"two-{uuid.uuid4().hex[:8]}"
    asked = TopicLayout(partitions=1, replication_factor=2, min_insync_replicas=1)
    await ensure_topics(cluster.client(), (topic,), asked)
    assert await described(cluster, topic) == (1, 2, 1)


async def test_a_write_acknowledged_while_a_broker_is_dead_is_read_after_it_is_back(
    nodes: LocalKafkaCluster,
) -> None:
    topic = f"durable-{uuid.uuid4().hex[:8]}"
    client = KafkaUnderTest(nodes.bootstrap_servers, "three plaintext brokers")
    await ensure_topics(client.client(), (topic,), TopicLayout(partitions=1))
    nodes.node(2).kill()
    producer = AIOKafkaProducer(
        bootstrap_servers=nodes.bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"while broker 2 was dead", key=b"line")
    finally:
        await producer.stop()
    nodes.node(2).start()
    nodes.node(1).kill()  # and now another one is gone: the write is on a live replica
    try:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=nodes.bootstrap_servers, auto_offset_reset="earliest",
            group_id=None, enable_auto_commit=False,
        )  # fmt: skip
        await consumer.start()
        try:
            record = await asyncio.wait_for(consumer.getone(), timeout=60)
        finally:
            await consumer.stop()
    finally:
        nodes.node(1).start()
    assert record.value == b"while broker 2 was dead"


def test_a_cluster_made_again_in_its_folder_is_the_same_cluster(tmp_path: Path) -> None:
    first, again = LocalKafkaCluster(tmp_path), LocalKafkaCluster(tmp_path)
    ids = {n.quorum.cluster_id for n in (*first.nodes, *again.nodes) if n.quorum is not None}
    assert len(ids) == 1
    assert [n.data_dir for n in again.nodes] == [tmp_path / f"node-{i}" for i in (1, 2, 3)]


async def test_the_topic_overview_shows_a_dead_brokers_partitions_out_of_sync_until_it_is_back(
    nodes: LocalKafkaCluster,
) -> None:
    topic = f"watched-{uuid.uuid4().hex[:8]}"
    kafka = KafkaUnderTest(nodes.bootstrap_servers, "three plaintext brokers")
    await ensure_topics(kafka.client(), (topic,))
    sampler = TopicSampler(kafka.client(), (topic,))

    async def sampled() -> dict[str, Any]:
        admin, consumer = AIOKafkaAdminClient(**kafka.options()), reader(kafka.client())
        await admin.start()
        await consumer.start()
        try:
            await sampler.sample(admin, consumer)
        finally:
            await consumer.stop()
            await admin.close()
        [overview] = sampler.overview()["topics"]
        return dict(overview)

    async def until(wanted: int) -> dict[str, Any]:
        for _ in range(60):
            found = await sampled()
            if found["under_replicated_partitions"] == wanted:
                return found
            await asyncio.sleep(0.5)
        return found

    healthy = await until(0)
    assert (healthy["replication_factor"], healthy["in_sync_replicas"]) == (3, 3)
    nodes.node(3).kill()
    try:
        # Every partition has a replica on every broker: all three are out of sync.
        degraded = await until(3)
        assert (degraded["under_replicated_partitions"], degraded["in_sync_replicas"]) == (3, 2)
        assert UNDER_REPLICATED.labels(topic)._value.get() == 3
        assert all(p["in_sync"] == 2 and p["leader"] != 3 for p in degraded["partitions"])
    finally:
        nodes.node(3).start()
    assert (await until(0))["in_sync_replicas"] == 3
    assert UNDER_REPLICATED.labels(topic)._value.get() == 0
