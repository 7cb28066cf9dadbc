"""The batches the services' consumers took (shared/batches.py), from their /metrics:
`topup_consumer_batch_size` per topic, read before and after a phase, as p50 and p99."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

Buckets = dict[tuple[str, str], dict[float, float]]  # (service, topic) -> le -> count
METRIC = "topup_consumer_batch_size"


async def read(services: Iterable[tuple[str, str]]) -> Buckets:
    """The cumulative buckets of every (service name, base URL)."""
    found: Buckets = {}
    async with httpx.AsyncClient(timeout=5.0) as client:
        for name, base_url in services:
            text = (await client.get(f"{base_url}/metrics/")).raise_for_status().text
            for family in text_string_to_metric_families(text):
                if family.name != METRIC:
                    continue
                for sample in family.samples:
                    if sample.name == f"{METRIC}_bucket":
                        key = (name, sample.labels["topic"])
                        found.setdefault(key, {})[float(sample.labels["le"])] = sample.value
    return found


def quantiles(before: Buckets, after: Buckets) -> dict[str, dict[str, Any]]:
    """Per `service topic`: batches taken between the two reads, and their p50 and p99
    (a bucket's upper bound, as Prometheus' histogram_quantile would say at most)."""
    shown: dict[str, dict[str, Any]] = {}
    for key, buckets in sorted(after.items()):
        earlier = before.get(key, {})
        counts = {le: n - earlier.get(le, 0.0) for le, n in sorted(buckets.items())}
        total = counts.get(math.inf, 0.0)
        if total <= 0:
            continue
        shown[" ".join(key)] = {
            "batches": int(total),
            "p50": _at(counts, 0.5 * total),
            "p99": _at(counts, 0.99 * total),
        }
    return shown


def _at(cumulative: dict[float, float], rank: float) -> float | str:
    for le, n in cumulative.items():
        if n >= rank:
            return "over 1024" if math.isinf(le) else le
    return "over 1024"
