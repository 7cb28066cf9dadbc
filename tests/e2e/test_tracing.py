"""Tracing end to end: the three service processes on the real broker with
TRACING_ENABLED=true, each writing its spans to a JSON-lines file. An order that
completes and one that is refunded each make one trace, named by the order id,
across the three services, every consumer span chained to its producer's."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiokafka import AIOKafkaProducer

from deploy.local.processes import (
    SERVICES,
    ServiceProcess,
    running,
    service_process,
    simulator_processes,
)
from shared import topics
from shared.kafka_access import CARRIER
from tests.e2e.conftest import SIMULATION, SUSPENDED_ICCID
from tests.e2e.test_saga_outcomes import final_order, publish
from tests.factories import order_request
from tests.infra import KafkaUnderTest

pytestmark = pytest.mark.e2e

Span = dict[str, Any]
T = TypeVar("T")


@pytest.fixture(scope="module")
def traced(
    kafka: KafkaUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, ServiceProcess], Path]]:
    """The three services on SQLite, tracing into `<folder>/<service>.spans.jsonl`."""
    folder = tmp_path_factory.mktemp("traced-stack")
    processes = {
        name: service_process(
            name,
            kafka.bootstrap_servers,
            f"sqlite+aiosqlite:///{folder / name}.db",
            {
                **SIMULATION,
                "TRACING_ENABLED": "true",
                "TRACING_FILE": str(folder / f"{name}.spans.jsonl"),
                "OTEL_EXPORTER_OTLP_ENDPOINT": "",  # the file, even where a collector is set
                "OTEL_BSP_SCHEDULE_DELAY": "200",  # export every 0.2 s, not every 5 s
                **kafka.env(name),
            },
            folder / f"{name}.log",
        )
        for name in SERVICES
    }
    simulators = simulator_processes(
        {name: [process] for name, process in processes.items()},
        None,  # an SQLite file each, in the folder
        SIMULATION,
        folder,
        kafka.env(CARRIER),
    )
    with running([*simulators, *processes.values()]):
        yield processes, folder


def spans_in(folder: Path) -> list[Span]:
    spans = []
    for path in folder.glob("*.spans.jsonl"):
        for line in path.read_text().splitlines():
            try:
                spans.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a batch being written as we read: complete next time
    return spans


async def eventually(check: Callable[[], T], within: float = 30.0) -> T:
    """`check()` once it stops failing (spans are exported in batches), or its failure."""
    deadline = time.monotonic() + within
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


def one_trace(folder: Path, order_id: uuid.UUID, last: str) -> list[Span]:
    """The order's trace, once it holds the consumption of `last` (its final message):
    every span about the order is in it, and it covers the three services."""
    spans = spans_in(folder)
    about = [s for s in spans if s["attributes"].get("order_id") == str(order_id)]
    assert {s["trace_id"] for s in about} == {order_id.hex}
    in_trace = [s for s in spans if s["trace_id"] == order_id.hex]
    assert {s["service"] for s in in_trace} == set(SERVICES)
    consumed = {s["attributes"].get("message.type") for s in in_trace if s["kind"] == "CONSUMER"}
    assert last in consumed
    return in_trace


def assert_consumers_chain_to_producers(trace: list[Span]) -> None:
    by_id = {s["span_id"]: s for s in trace}
    orphans = [s for s in trace if s["parent_span_id"] and s["parent_span_id"] not in by_id]
    assert orphans == []
    processed = [s for s in trace if s["name"].endswith(" process")]
    relayed = [s for s in processed if not s["name"].startswith(topics.ORDERS_COMMANDS)]
    assert relayed
    for consumer in relayed:
        producer = by_id[consumer["parent_span_id"]]
        topic = consumer["name"].removesuffix(" process")
        assert producer["name"] == f"{topic} create"
        assert producer["kind"] == "PRODUCER"
        assert producer["attributes"]["event_id"] == consumer["attributes"]["event_id"]


PLACED = f"{topics.ORDERS_COMMANDS} create"  # the root: a PlaceOrder comes untraced


@pytest.mark.parametrize(
    ("overrides", "final", "last", "roots"),
    [
        pytest.param({}, "COMPLETED", "LineToppedUp", {PLACED}, id="completed"),
        pytest.param(
            {"iccid": SUSPENDED_ICCID},
            "REFUNDED",
            "PaymentRefunded",
            {PLACED},
            id="refunded",
        ),
        pytest.param(
            # Confirmed a moment later: the settler, a background loop, publishes the capture.
            {"payment_method": "alipay", "currency": "CNY"},
            "COMPLETED",
            "LineToppedUp",
            {PLACED, "stage PaymentCaptured"},
            id="settled-in-the-background",
        ),
    ],
)
async def test_an_order_is_one_trace_across_the_three_services_named_by_its_id(
    traced: tuple[dict[str, ServiceProcess], Path],
    producer: AIOKafkaProducer,
    overrides: dict[str, str],
    final: str,
    last: str,
    roots: set[str],
) -> None:
    services, folder = traced
    request = order_request(**overrides)
    order_id = await publish(producer, request)
    assert (await final_order(services, order_id))["state"] == final

    def chained() -> None:
        trace = one_trace(folder, order_id, last)
        assert_consumers_chain_to_producers(trace)
        assert {s["name"] for s in trace if s["parent_span_id"] is None} == roots

    await eventually(chained)  # each service exports its spans in batches of its own
    written = "".join(path.read_text() for path in folder.glob("*.spans.jsonl"))
    for personal in (request["iccid"], request["msisdn"], request["email"]):
        assert personal not in written
