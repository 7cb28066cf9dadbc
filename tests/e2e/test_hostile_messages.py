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
    services: Services, producer: AIOKafkaProducer, kafka: KafkaUnderTest
) -> None:
    line = order_request()["iccid"]
    key = line.encode()
    logs_before = {name: log_size(process) for name, process in services.items()}

    hostile = {topic: _huge(topic) for topic in CONSUMED}
    for topic, body in hostile.items():
        await producer.send_and_wait(topic, body, key=key)
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
    marker = uuid.uuid4().hex
    return json.dumps(
        {"type": "PlaceOrder", "topic": topic, "pad": marker * (ABOUT_1_MIB // 32)}
    ).encode()


async def test_a_card_number_in_the_token_is_refused_and_travels_no_further(
    services: Services, producer: AIOKafkaProducer, kafka: KafkaUnderTest
) -> None:
    request = order_request(payment_token="card: 4242.4242.4242.4242")
    order_id = await publish(producer, request)
    [rejected] = await messages_about(kafka, topics.ORDERS_EVENTS, order_id)
    assert rejected["reason"] == "card_number_not_accepted"
    after = order_request(iccid=request["iccid"])  # behind it on the same partition
    assert (await final_order(services, await publish(producer, after)))["state"] == "COMPLETED"
    assert await messages_about(kafka, topics.PAYMENTS_COMMANDS, order_id, count=0, settle=2) == []
    for topic in (topics.ORDERS_EVENTS, topics.PAYMENTS_COMMANDS, topics.ORDERS_COMMANDS + ".dlt"):
        with pytest.raises(AssertionError, match="0 of 1 records"):  # read for 3 s: none
            await records_where(kafka, topic, holds_the_card_number, within=3)
    for process in services.values():
        assert process.log_path is not None
        assert "4242.4242.4242.4242" not in process.log_path.read_text(errors="replace")


def holds_the_card_number(record: Record) -> bool:
    return b"4242.4242" in (record.value or b"") or b"4242424242424242" in (record.value or b"")
