"""Topic rates from end-offset samples, and consumer groups' lag from committed offsets."""

from datetime import UTC, datetime

from aiokafka import TopicPartition

from services.operator.topics import Replicas, Sample, rates, show_replicas, topic_overview
from shared.metrics import IN_SYNC_REPLICAS, OFFLINE_PARTITIONS, UNDER_REPLICATED

P0, P1, P2 = (TopicPartition("t.v1", n) for n in range(3))


def test_a_rate_is_how_far_the_end_moved_over_the_window() -> None:
    samples = [Sample(100.0, {P0: 10, P1: 0}), Sample(102.0, {P0: 14, P1: 0}),
               Sample(104.0, {P0: 30, P1: 8})]  # fmt: skip
    assert rates(samples, window_s=10) == {P0: 5.0, P1: 2.0}


def test_samples_older_than_the_window_do_not_count() -> None:
    samples = [Sample(0.0, {P0: 0}), Sample(96.0, {P0: 1000}), Sample(100.0, {P0: 1040})]
    assert rates(samples, window_s=5) == {P0: 10.0}


def test_with_one_sample_or_none_the_rate_is_zero() -> None:
    assert rates([], window_s=10) == {}
    assert rates([Sample(1.0, {P0: 7})], window_s=10) == {P0: 0.0}


def test_a_new_partition_counts_from_its_first_sample() -> None:
    samples = [Sample(0.0, {P0: 5}), Sample(2.0, {P0: 5, P1: 4})]
    assert rates(samples, window_s=10) == {P0: 0.0, P1: 0.0}


def test_the_overview_sums_partitions_and_shows_each_groups_lag() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    body = topic_overview(
        ["t.v1", "t.v1.dlt"],
        {P0: 400, P1: 100, TopicPartition("t.v1.dlt", 0): 2},
        {P0: 1.25, P1: 0.5},
        {"svc:t.v1": {P0: 400, P1: 90}, "other:x.v1": {TopicPartition("x.v1", 0): 3}},
        at,
        10,
    )
    topic, dead = body["topics"]
    assert body["sampled_at"] == at.isoformat()
    assert body["window_s"] == 10
    assert (topic["end_offset"], topic["rate_per_s"], topic["dead_letter"]) == (500, 1.75, False)
    assert topic["partitions"] == [
        {"partition": 0, "end_offset": 400, "rate_per_s": 1.25},
        {"partition": 1, "end_offset": 100, "rate_per_s": 0.5},
    ]
    assert topic["consumer_groups"] == [
        {"group": "svc:t.v1", "lag": 10, "partitions": [
            {"partition": 0, "committed": 400, "lag": 0},
            {"partition": 1, "committed": 90, "lag": 10},
        ]},
    ]  # fmt: skip
    assert (dead["dead_letter"], dead["end_offset"], dead["consumer_groups"]) == (True, 2, [])


def test_a_partition_with_a_replica_out_of_sync_or_no_leader_is_shown_and_counted() -> None:
    placement = {P0: Replicas(1, 3, 3), P1: Replicas(2, 3, 2), P2: Replicas(-1, 3, 1)}
    body = topic_overview(["t.v1"], {P0: 4, P1: 5, P2: 6}, {}, {}, None, 10, placement)
    [topic] = body["topics"]
    assert topic["replication_factor"] == 3
    assert topic["in_sync_replicas"] == 1
    assert (topic["under_replicated_partitions"], topic["offline_partitions"]) == (2, 1)
    assert topic["partitions"][1] == {
        "partition": 1, "end_offset": 5, "rate_per_s": 0.0, "leader": 2, "replicas": 3,
        "in_sync": 2,
    }  # fmt: skip
    show_replicas(["t.v1"], placement)
    assert UNDER_REPLICATED.labels("t.v1")._value.get() == 2
    assert OFFLINE_PARTITIONS.labels("t.v1")._value.get() == 1
    assert IN_SYNC_REPLICAS.labels("t.v1")._value.get() == 1
