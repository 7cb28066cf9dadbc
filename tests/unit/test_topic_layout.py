"""The replication a service's topics get (shared/topic_layout.py): safe on a cluster,
what there is on one broker, and the settings first, unless they cannot work."""

from __future__ import annotations

from typing import Any

import pytest

from shared.kafka import addresses, build_broker
from shared.settings import ServiceSettings
from shared.topic_layout import Replication, ReplicationError, TopicLayout


@pytest.mark.parametrize(
    ("brokers", "expected"),
    [
        (1, Replication(1, 1)),
        (2, Replication(2, 1)),
        (3, Replication(3, 2)),
        (5, Replication(3, 2)),
    ],
)
def test_unset_replication_is_three_and_two_on_a_cluster_and_what_there_is_below(
    brokers: int, expected: Replication
) -> None:
    assert Replication.for_cluster(brokers) == expected


def test_the_settings_come_first() -> None:
    assert Replication.for_cluster(5, factor=5, min_insync=3) == Replication(5, 3)
    assert Replication.for_cluster(3, factor=2) == Replication(2, 1)
    assert Replication.for_cluster(1, min_insync=1) == Replication(1, 1)


def test_more_in_sync_replicas_than_replicas_is_refused_as_no_write_could_succeed() -> None:
    with pytest.raises(ReplicationError, match="no write could ever be acknowledged"):
        Replication.for_cluster(3, factor=2, min_insync=3)
    with pytest.raises(ReplicationError):
        Replication.for_cluster(1, min_insync=2)


def test_the_layout_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_PARTITIONS", "6")
    monkeypatch.setenv("KAFKA_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("KAFKA_MIN_INSYNC_REPLICAS", "2")
    layout = TopicLayout.of(ServiceSettings(service_name="orders"))
    assert (layout.partitions, layout.replication_factor, layout.min_insync_replicas) == (6, 3, 2)
    assert TopicLayout.of(ServiceSettings(service_name="orders")).configs == {}


def test_every_address_of_kafka_bootstrap_servers_reaches_the_broker_client() -> None:
    assert addresses("a:1, b:2,c:3,") == ["a:1", "b:2", "c:3"]
    broker = build_broker(ServiceSettings(service_name="orders", kafka_bootstrap_servers="a:1,b:2"))
    # The consumers' factory (shared/batches.py builds its consumers with it too).
    builder: Any = broker.config.broker_config.builder  # a functools.partial
    assert builder.keywords["bootstrap_servers"] == ["a:1", "b:2"]
