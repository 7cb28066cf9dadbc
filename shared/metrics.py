"""Prometheus metrics: FastStream's own (messages consumed and published, durations,
errors, per topic) plus the business ones below, served at /metrics by every service.

Counters change after the transaction they describe has committed where that is
cheap to arrange, else when the step runs (a rolled-back step then counts once more
than it happened: metrics are for dashboards, the databases are the record).
"""

from __future__ import annotations

from fastapi import FastAPI
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, make_asgi_app

ORDERS = Counter("topup_orders_total", "Orders by how they ended", ["outcome"])
REJECTIONS = Counter("topup_order_rejections_total", "Refused order requests", ["reason"])
SAGA_SECONDS = Histogram(
    "topup_saga_duration_seconds",
    "From placed to the end of the saga",
    ["outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
TOPUPS = Counter("topup_topups_total", "Top-ups by outcome", ["outcome"])
REFUNDS = Counter("topup_refunds_total", "Refunds answered by the provider", ["outcome"])
DEAD_LETTERS = Counter(
    "topup_dead_letters_total", "Messages sent to a dead-letter topic", ["topic", "reason"]
)
# Calls to the outside world that outlived their message (shared/late_answers.py).
LATE_ANSWERS = Counter(
    "topup_outside_answers_late_total",
    "Provider or carrier answers a consumer stopped waiting for (recorded when they came)",
    ["service"],
)
OUTSIDE_CALLS_OUT = Gauge(
    "topup_outside_calls_out",
    "Provider or carrier calls still out after their message",
    ["service"],
)
# Consumers (shared/batches.py): how messages were handled, and the batches they came in.
CONSUMED = Counter(
    "topup_messages_consumed_total",
    "Messages handled by a batch consumer: in a batch, or one at a time",
    ["topic", "path"],
)
BATCH_SIZES = Histogram(
    "topup_consumer_batch_size",
    "Records of one partition handled together",
    ["topic"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
# Topics as found or made at start-up (shared/topic_layout.py).
TOPIC_REPLICATION = Gauge(
    "topup_topic_replication_factor",
    "Replicas of a topic's partitions (the fewest of any), found or made at start-up",
    ["topic"],
)
TOPIC_MIN_INSYNC = Gauge(
    "topup_topic_min_insync_replicas", "A topic's min.insync.replicas at start-up", ["topic"]
)
TOPIC_BELOW_SETTING = Gauge(
    "topup_topic_replication_below_setting",
    "1: the topic's replication factor or min.insync.replicas is below the settings'",
    ["topic"],
)
# Topics as the operator service samples them (services/operator/topics.py).
UNDER_REPLICATED = Gauge(
    "topup_topic_under_replicated_partitions",
    "Partitions of a topic with fewer replicas in sync than it has",
    ["topic"],
)
OFFLINE_PARTITIONS = Gauge(
    "topup_topic_offline_partitions", "Partitions of a topic without a leader", ["topic"]
)
IN_SYNC_REPLICAS = Gauge(
    "topup_topic_in_sync_replicas",
    "In-sync replicas of a topic's partitions (the fewest)",
    ["topic"],
)
OUTBOX_BACKLOG = Gauge("topup_outbox_backlog", "Outbox rows not yet published")
OUTBOX_PUBLISHED = Counter("topup_outbox_published_total", "Outbox rows published")
OUTBOX_PARKED = Counter(
    "topup_outbox_parked_total", "Outbox rows parked: the broker refused them for good"
)
RECONCILER = Counter(
    "topup_reconciler_actions_total",
    "What the background loops did: settled, retried, expired, nudged",
    ["action"],
)


def prometheus_middleware(service: str) -> KafkaPrometheusMiddleware:
    return KafkaPrometheusMiddleware(registry=REGISTRY, app_name=service)


def mount_metrics(app: FastAPI) -> None:
    app.mount("/metrics", make_asgi_app(REGISTRY))
