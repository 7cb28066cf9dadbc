"""No single message stops the backend: a message of about 1 MiB on every topic a service
consumes, and a PlaceOrder whose answer would quote an inflated promotion code, then
orders on the same line (the same partition of every topic) and on another line. Every
hostile message is dead-lettered or answered with a bounded rejection, every valid order
completes, the logs stay small and /health stays ok: nothing needs a restart."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from deploy.local.processes import ServiceProcess
from shared import limits, topics
from shared.events import order_id_for
from tests.e2e.test_saga_outcomes import Services, final_order, publish
from tests.factories import order_request, random_iccid
from tests.infra import KafkaUnderTest
from tests.integration.harness import Record, headers_of, messages_about, records_where

pytestmark = pytest.mark.e2e

CONSUMED = (  # every topic one of the three services consumes
    topics.ORDERS_COMMANDS,
    topics.PAYMENTS_EVENTS,
    topics.PROVISIONING_EVENTS,
    topics.PAYMENTS_COMMANDS,
    topics.PROVISIONING_COMMANDS,
    topics.ORDERS_EVENTS,
    topics.CARRIER_USAGE,
)
ABOUT_1_MIB = 1_000_000  # below what the broker takes, far above what the contract allows


async def test_one_mib_messages_and_an_inflating_order_stop_nothing(
    services: Services,
    producer: AIOKafkaProducer,
    any_party: AIOKafkaProducer,
    kafka: KafkaUnderTest,
) -> None:
    line = order_request()["iccid"]
    key = line.encode()
    logs_before = {name: log_size(process) for name, process in services.items()}

    hostile = {topic: _huge(topic) for topic in CONSUMED}
    for topic, body in hostile.items():
        await any_party.send_and_wait(topic, body, key=key)
    inflating = order_request(iccid=line, promotion_code='"\\' * 10_000)  # 40 KB as JSON
    inflating_id = await publish(producer, inflating)

    same_line = order_request(iccid=line)
    other_line = order_request(iccid=random_iccid())
    orders = [await publish(producer, same_line), await publish(producer, other_line)]
    for order_id in orders:
        assert (await final_order(services, order_id, within=60))["state"] == "COMPLETED"

    [rejected] = await messages_about(kafka, topics.ORDERS_EVENTS, inflating_id)
    assert rejected["reason"] == "malformed_request"  # beyond the code's bound
    assert "promotion_code" in rejected["message"]
    assert len(rejected["message"]) <= 500
    for topic, body in hostile.items():
        letter = await dead_letter_by_digest(kafka, topic, hashlib.sha256(body).hexdigest())
        headers = headers_of(letter)
        assert headers["dlq.reason"] == "too_large", topic
        assert headers["dlq.source.size"] == str(len(body))
        assert letter.value == body[: limits.DEAD_LETTER_PREFIX_BYTES]
    for name, process in services.items():
        grown = log_size(process) - logs_before[name]
        assert grown < 200_000, f"{name}'s log grew by {grown} bytes"
        health = process.health()
        assert health is not None
        assert health["status"] == "ok", health
    assert order_id_for(inflating["request_id"]) == inflating_id


def log_size(process: ServiceProcess) -> int:
    assert process.log_path is not None
    return process.log_path.stat().st_size


async def dead_letter_by_digest(kafka: KafkaUnderTest, topic: str, digest: str) -> Record:
    def named(record: Record) -> bool:
        return headers_of(record).get("dlq.source.sha256") == digest

    [letter] = await records_where(kafka, topics.dead_letter_topic(topic), named)
    return letter


def _huge(topic: str) -> bytes:
    """Valid-looking JSON of about 1 MiB: a PlaceOrder-shaped body padded out."""
    # Letters only: a hex marker repeated can hold a run of digits that looks like a card
    # number, and a dead letter keeps those masked (shared/dead_letters.py).
    marker = uuid.uuid4().hex.translate(str.maketrans("0123456789", "ghijklmnop"))
    return json.dumps(
        {"type": "PlaceOrder", "topic": topic, "pad": marker * (ABOUT_1_MIB // 32)}
    ).encode()


async def test_headers_that_are_not_utf8_neither_drop_an_order_nor_grow_the_logs(
    services: Services, producer: AIOKafkaProducer, kafka: KafkaUnderTest
) -> None:
    logs_before = {name: log_size(process) for name, process in services.items()}
    bad = [("x-bad", b"\xff" + b"\x00\xfe" * 20_000)]
    request = order_request()
    await producer.send_and_wait(
        topics.ORDERS_COMMANDS, json.dumps(request).encode(), key=request["iccid"].encode(),
        headers=bad,
    )  # fmt: skip
    order_id = order_id_for(request["request_id"])
    assert (await final_order(services, order_id))["state"] == "COMPLETED"
    for name, process in services.items():
        assert log_size(process) - logs_before[name] < 50_000, name
