"""The topic overview: every topic's end offsets, message rate, consumer groups' lag and
replicas (how many each partition has, how many are in sync, which broker leads it).

A sampler reads the end offset of every partition every couple of seconds and keeps
the samples of the last window; a rate is how far the end moved over that window.
The consumer groups are the ones the broker really has with offsets committed on a
topic (services name theirs `<service>:<topic>`, shared/kafka.py saga_subscriber).
The API serves the latest snapshot, so asking is cheap however often the page does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.operator.dead_letter_store import DLT_SUFFIX, reader
from shared.kafka_access import KafkaClient
from shared.kafka_admin import patiently
from shared.metrics import IN_SYNC_REPLICAS, OFFLINE_PARTITIONS, UNDER_REPLICATED

log = logging.getLogger(__name__)

Offsets = dict[TopicPartition, int]


@dataclass(frozen=True)
class Replicas:
    """A partition's replicas as the broker's metadata says: its leader (-1: none, the
    partition is offline), its replicas and those in sync."""

    leader: int
    replicas: int
    in_sync: int

    @property
    def under_replicated(self) -> bool:
        return self.in_sync < self.replicas


Placement = dict[TopicPartition, Replicas]


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    ends: Offsets


def rates(samples: Sequence[Sample], window_s: float) -> dict[TopicPartition, float]:
    """Messages per second of each partition over the samples of the last `window_s`
    (from the first sample in the window to the last); 0 until there are two."""
    if not samples:
        return {}
    last = samples[-1]
    in_window = [s for s in samples if s.at >= last.at - window_s]
    first = in_window[0]
    elapsed = last.at - first.at
    if elapsed <= 0:
        return {tp: 0.0 for tp in last.ends}
    return {tp: max(0, end - first.ends.get(tp, end)) / elapsed for tp, end in last.ends.items()}


@dataclass
class TopicSampler:
    kafka: KafkaClient
    topics: tuple[str, ...]
    interval_s: float = 2.0
    window_s: float = 10.0
    samples: deque[Sample] = field(default_factory=deque)
    committed: dict[str, Offsets] = field(default_factory=dict)
    placement: Placement = field(default_factory=dict)
    sampled_at: datetime | None = None

    async def run(self) -> None:
        """Sample until cancelled; a failed sample is logged and the next one tried."""
        admin = AIOKafkaAdminClient(**self.kafka.options())
        consumer = reader(self.kafka)
        await admin.start()
        await consumer.start()
        try:
            while True:
                try:
                    await self.sample(admin, consumer)
                except Exception as error:  # the broker may be restarting: keep going
                    log.warning("could not sample the topics: %r", error)
                await asyncio.sleep(self.interval_s)
        finally:
            await consumer.stop()
            await admin.close()

    async def sample(self, admin: AIOKafkaAdminClient, consumer: Any) -> None:
        described = await patiently(lambda: admin.describe_topics(list(self.topics)))
        self.placement = {
            TopicPartition(str(t["topic"]), int(p["partition"])): Replicas(
                int(p["leader"]), len(p["replicas"] or ()), len(p["isr"] or ())
            )
            for t in described
            if t["topic"] in self.topics
            for p in t["partitions"]
        }
        show_replicas(self.topics, self.placement)
        partitions = list(self.placement)
        ends: Offsets = await consumer.end_offsets(partitions) if partitions else {}
        self.committed = await self._committed(admin)
        now = time.monotonic()
        self.samples.append(Sample(now, dict(ends)))
        while self.samples and self.samples[0].at < now - self.window_s - self.interval_s:
            self.samples.popleft()
        self.sampled_at = datetime.now(UTC)

    async def _committed(self, admin: AIOKafkaAdminClient) -> dict[str, Offsets]:
        """Each group's committed offsets on our topics (groups with none left out)."""
        listed = await patiently(admin.list_consumer_groups)
        groups = sorted({str(group[0]) for group in listed})
        fetched = await asyncio.gather(
            *(admin.list_consumer_group_offsets(group) for group in groups),
            return_exceptions=True,
        )
        committed: dict[str, Offsets] = {}
        for group, offsets in zip(groups, fetched, strict=True):
            if isinstance(offsets, BaseException):
                log.debug("offsets of group %s: %r", group, offsets)
                continue
            ours = {
                tp: int(meta.offset)
                for tp, meta in offsets.items()
                if tp.topic in self.topics and meta.offset >= 0
            }
            if ours:
                committed[group] = ours
        return committed

    def overview(self) -> dict[str, Any]:
        ends = self.samples[-1].ends if self.samples else {}
        return topic_overview(
            self.topics,
            ends,
            rates(self.samples, self.window_s),
            self.committed,
            self.sampled_at,
            self.window_s,
            self.placement,
        )


def show_replicas(topics: Iterable[str], placement: Placement) -> None:
    """Each topic's under-replicated and offline partitions and its fewest in-sync
    replicas, on /metrics."""
    for topic in topics:
        mine = [r for tp, r in placement.items() if tp.topic == topic]
        if not mine:
            continue
        UNDER_REPLICATED.labels(topic).set(sum(r.under_replicated for r in mine))
        OFFLINE_PARTITIONS.labels(topic).set(sum(r.leader < 0 for r in mine))
        IN_SYNC_REPLICAS.labels(topic).set(min(r.in_sync for r in mine))


def topic_overview(
    topics: Iterable[str],
    ends: Offsets,
    rate: dict[TopicPartition, float],
    committed: dict[str, Offsets],
    sampled_at: datetime | None,
    window_s: float,
    placement: Placement | None = None,
) -> dict[str, Any]:
    """The /api/topics body from one snapshot."""
    return {
        "sampled_at": sampled_at.isoformat() if sampled_at else None,
        "window_s": window_s,
        "topics": [_topic(name, ends, rate, committed, placement or {}) for name in topics],
    }


def _replication(partitions: list[TopicPartition], placement: Placement) -> dict[str, Any]:
    known = [placement[tp] for tp in partitions if tp in placement]
    return {
        "replication_factor": min((r.replicas for r in known), default=None),
        "in_sync_replicas": min((r.in_sync for r in known), default=None),
        "under_replicated_partitions": sum(r.under_replicated for r in known),
        "offline_partitions": sum(r.leader < 0 for r in known),
    }


def _topic(
    name: str,
    ends: Offsets,
    rate: dict[TopicPartition, float],
    committed: dict[str, Offsets],
    placement: Placement,
) -> dict[str, Any]:
    partitions = sorted((tp for tp in ends if tp.topic == name), key=lambda tp: tp.partition)
    groups = []
    for group, offsets in sorted(committed.items()):
        mine = sorted((tp for tp in offsets if tp.topic == name), key=lambda tp: tp.partition)
        if not mine:
            continue
        lags = [
            {
                "partition": tp.partition,
                "committed": offsets[tp],
                "lag": max(0, ends.get(tp, offsets[tp]) - offsets[tp]),
            }
            for tp in mine
        ]
        groups.append({"group": group, "lag": sum(p["lag"] for p in lags), "partitions": lags})
    return {
        "name": name,
        "dead_letter": name.endswith(DLT_SUFFIX),
        "end_offset": sum(ends[tp] for tp in partitions),
        "rate_per_s": round(sum(rate.get(tp, 0.0) for tp in partitions), 2),
        **_replication(partitions, placement),
        "partitions": [
            {
                "partition": tp.partition,
                "end_offset": ends[tp],
                "rate_per_s": round(rate.get(tp, 0.0), 2),
                **_placed(placement.get(tp)),
            }
            for tp in partitions
        ],
        "consumer_groups": groups,
    }


def _placed(replicas: Replicas | None) -> dict[str, Any]:
    if replicas is None:
        return {}
    return {"leader": replicas.leader, "replicas": replicas.replicas, "in_sync": replicas.in_sync}
