"""The topics a service uses, created as the settings say: partitions, replication factor
and `min.insync.replicas`, dead-letter and audit topics alike, so nothing depends on the
broker's auto-creation or its defaults.

Replication, unless KAFKA_REPLICATION_FACTOR and KAFKA_MIN_INSYNC_REPLICAS say otherwise,
is chosen from the cluster met at start: three replicas and two in sync on three brokers or
more (a broker may die and writes go on, with every acknowledged message on two disks),
what the cluster has below that (one and one on a single local broker). The brokers
counted are those up at that moment: on a real cluster, set both, so that a service
starting while a broker is down refuses to make a topic with fewer (`ReplicationError`)
rather than making it so. The producers wait
for every in-sync replica (`acks=all`, shared/kafka.py); docs/guarantees.md says what a
broker's death loses at each setting.

A topic that exists already is kept as it is: more partitions would move a line's key, and
a replication change is a reassignment, an operator's decision. What differs from the
settings is reported at start, a warning in the log and gauges on /metrics
(`topup_topic_replication_below_setting` is 1), never passed over in silence.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    TopicAlreadyExistsError,
    for_code,
)

from shared.kafka_access import KafkaClient
from shared.kafka_admin import patiently
from shared.metrics import TOPIC_BELOW_SETTING, TOPIC_MIN_INSYNC, TOPIC_REPLICATION
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

DEFAULT_PARTITIONS: Final = 3  # KAFKA_PARTITIONS' default (shared/settings.py)
SAFE_FACTOR: Final = 3  # on a cluster of three brokers or more
SAFE_MIN_INSYNC: Final = 2
MIN_INSYNC: Final = "min.insync.replicas"


class ReplicationError(ValueError):
    """The settings ask for a replication the cluster cannot give: the service does not
    start, and says why."""


@dataclass(frozen=True)
class Replication:
    factor: int
    min_insync: int

    @classmethod
    def for_cluster(
        cls, brokers: int, factor: int | None = None, min_insync: int | None = None
    ) -> Replication:
        """What the settings say, else the safe choice for a cluster of `brokers`."""
        chosen = factor if factor is not None else max(1, min(brokers, SAFE_FACTOR))
        if min_insync is None:
            min_insync = SAFE_MIN_INSYNC if chosen >= SAFE_FACTOR else 1
        if min_insync > chosen:
            raise ReplicationError(
                f"KAFKA_MIN_INSYNC_REPLICAS is {min_insync}, more than the {chosen} replicas "
                "of each partition: no write could ever be acknowledged"
            )
        return cls(chosen, min_insync)


@dataclass(frozen=True)
class TopicLayout:
    """How the topics are made (None: chosen from the cluster, see `Replication`)."""

    partitions: int = DEFAULT_PARTITIONS
    replication_factor: int | None = None
    min_insync_replicas: int | None = None
    configs: Mapping[str, str] = field(default_factory=dict)  # more topic configs

    @classmethod
    def of(cls, settings: ServiceSettings) -> TopicLayout:
        return cls(
            settings.kafka_partitions,
            settings.kafka_replication_factor,
            settings.kafka_min_insync_replicas,
        )


async def ensure_topics(
    kafka: KafkaClient | ServiceSettings,
    topics: Sequence[str],
    layout: TopicLayout | None = None,
) -> Replication:
    """Create the `topics` missing, as `layout` says, and report those that differ.

    A service may start while the broker is still (re)starting: wait for it, backing off,
    instead of exiting. Returns the replication new topics get."""
    layout = layout or TopicLayout()
    admin = AIOKafkaAdminClient(**KafkaClient.of(kafka).options())
    await _started(admin, KafkaClient.of(kafka).bootstrap_servers)
    try:
        cluster = await patiently(admin.describe_cluster)
        brokers = len(cluster.get("brokers") or ())
        replication = Replication.for_cluster(
            brokers, layout.replication_factor, layout.min_insync_replicas
        )
        existing = set(await patiently(admin.list_topics))
        await _report_existing(admin, [t for t in topics if t in existing], layout, replication)
        missing = [t for t in topics if t not in existing]
        if missing:
            await _create(admin, missing, layout, replication, brokers)
        return replication
    finally:
        await admin.close()


async def _started(admin: AIOKafkaAdminClient, bootstrap_servers: str) -> None:
    for delay in (0.5, 1, 2, 4, 8, 15, 30, None):
        try:
            await admin.start()
            return
        except KafkaConnectionError:
            if delay is None:
                raise
            log.warning("broker %s not reachable; retrying in %ss", bootstrap_servers, delay)
            await asyncio.sleep(delay)


async def _create(
    admin: AIOKafkaAdminClient,
    names: list[str],
    layout: TopicLayout,
    replication: Replication,
    brokers: int,
) -> None:
    if replication.factor > brokers:
        raise ReplicationError(
            f"topics {', '.join(names)} need {replication.factor} replicas "
            f"(KAFKA_REPLICATION_FACTOR) and the cluster has {brokers} broker(s) up: "
            "start the others, or lower the setting"
        )
    configs = {**layout.configs, MIN_INSYNC: str(replication.min_insync)}
    new = [NewTopic(name, layout.partitions, replication.factor, topic_configs=configs)
           for name in names]  # fmt: skip
    answer = await patiently(lambda: admin.create_topics(new))
    # The broker answers each topic's outcome; aiokafka raises none of them.
    for topic, code, *message in answer.topic_errors:
        if code == TopicAlreadyExistsError.errno:
            log.debug("another process created %s first", topic)
        elif code != 0:
            error = for_code(code)
            raise ReplicationError(
                f"topic {topic} was not created: {error.__name__} ({code}) "
                f"{' '.join(str(m) for m in message if m)}".strip()
            )
    log.info(
        "topics created with %d partitions, %d replicas, min.insync.replicas %d: %s",
        layout.partitions, replication.factor, replication.min_insync, ", ".join(names),
    )  # fmt: skip
    for name in names:
        _shown(name, replication.factor, replication.min_insync, below=False)


async def _report_existing(
    admin: AIOKafkaAdminClient, names: list[str], layout: TopicLayout, wanted: Replication
) -> None:
    """Existing topics keep their layout: what differs from the settings is said once, at
    start, and shown on /metrics."""
    if not names:
        return
    try:
        described = await patiently(lambda: admin.describe_topics(names))
        min_insync = await patiently(lambda: _min_insync_of(admin, names))
    except KafkaError as error:  # only a report: never a reason not to start
        log.warning("topics not described (%r): their replication is not checked", error)
        return
    unread = [name for name in names if name not in min_insync]
    if unread:
        log.warning(
            "min.insync.replicas of %s not readable (the principal may lack DESCRIBE_CONFIGS): "
            "only their replicas are checked", ", ".join(unread),
        )  # fmt: skip
    for topic in described:
        name, partitions = str(topic.get("topic")), topic.get("partitions") or ()
        if not partitions:
            continue
        if len(partitions) != layout.partitions:
            log.warning(
                "topic %s has %d partitions, KAFKA_PARTITIONS says %d: kept as it is "
                "(more partitions would move a line's messages out of order)",
                name, len(partitions), layout.partitions,
            )  # fmt: skip
        factor = min(len(p.get("replicas") or ()) for p in partitions)
        in_sync = min_insync.get(name)
        below = factor < wanted.factor or (in_sync is not None and in_sync < wanted.min_insync)
        if below:
            log.warning(
                "topic %s has %d replicas and min.insync.replicas %s, below the %d and %d "
                "asked for: kept as it is (a broker's death may lose acknowledged messages); "
                "raise them with a partition reassignment and kafka-configs",
                name, factor, "unknown" if in_sync is None else in_sync, wanted.factor,
                wanted.min_insync,
            )  # fmt: skip
        _shown(name, factor, in_sync, below=below)


async def _min_insync_of(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    resources = [ConfigResource(ConfigResourceType.TOPIC, name, {MIN_INSYNC: None})
                 for name in names]  # fmt: skip
    found: dict[str, int] = {}
    for response in await admin.describe_configs(resources):
        for resource in response.to_object()["resources"]:
            for entry in resource["config_entries"]:
                if entry["config_names"] == MIN_INSYNC and entry["config_value"] is not None:
                    found[resource["resource_name"]] = int(entry["config_value"])
    return found


def _shown(topic: str, factor: int, min_insync: int | None, *, below: bool) -> None:
    TOPIC_REPLICATION.labels(topic).set(factor)
    if min_insync is not None:
        TOPIC_MIN_INSYNC.labels(topic).set(min_insync)
    TOPIC_BELOW_SETTING.labels(topic).set(1 if below else 0)
