"""Dead letters on the real broker and PostgreSQL: orders in-process is sent what it
cannot process; each lands on `<topic>.dlt` with its bytes, key and origin, and the
consumer moves on (a valid message behind them on the same partition still goes
through). Listing and replaying them goes through the operator service: its tests are
tests/integration/test_operator_on_real_infra.py and tests/browser/test_topup_cli.py."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from services.orders.app import build_app
from shared import topics
from shared.events import Money, PaymentCaptured, order_id_for
from tests.factories import order_request
from tests.infra import KafkaUnderTest, PostgresUnderTest
from tests.integration.harness import (
    dead_letter_of,
    headers_of,
    messages_about,
    produce,
    service_running,
)

pytestmark = pytest.mark.integration

EUR = Money(amount_minor=1500, currency="EUR")


async def test_what_orders_cannot_process_is_dead_lettered_and_the_partition_moves_on(
    kafka: KafkaUnderTest,
    postgres: PostgresUnderTest,
    undecodable: list[tuple[str, int, int]],
) -> None:
    request = order_request()
    order_id = order_id_for(request["request_id"])
    key = request["iccid"].encode()  # one line: everything below shares one partition per topic
    marker = uuid.uuid4().hex

    def captured(**fields: Any) -> dict[str, Any]:
        ids = {"order_id": uuid.uuid4(), "iccid": request["iccid"]}
        event = PaymentCaptured(**ids, amount=EUR, fee=EUR, provider_reference=f"p-{marker}")
        return {**event.model_dump(mode="json"), **fields}

    bad_events = {
        "undecodable": f"not json {marker} ".encode() + b"\xff\xfe\x00",
        "schema_invalid": json.dumps({"type": "PaymentCaptured", "marker": marker}).encode(),
        "unknown_schema_version": json.dumps(captured(schema_version=99)).encode(),
        "business_rule": json.dumps(captured()).encode(),  # about an order that does not exist
    }
    bad_command = f"{{not json {marker}".encode()

    async with service_running(build_app, "orders", kafka, postgres):
        command_at = await produce(kafka, topics.ORDERS_COMMANDS, bad_command, key)
        undecodable.append((topics.ORDERS_COMMANDS, *command_at))
        events_at = {
            reason: await produce(kafka, topics.PAYMENTS_EVENTS, body, key)
            for reason, body in bad_events.items()
        }
        undecodable.append((topics.PAYMENTS_EVENTS, *events_at["undecodable"]))

        # A valid order placed after them, and its payment, behind them on their partitions.
        placed_at = await produce(kafka, topics.ORDERS_COMMANDS, json.dumps(request).encode(), key)
        [charge] = await messages_about(kafka, topics.PAYMENTS_COMMANDS, order_id)
        amount, fee = Money.model_validate(charge["amount"]), Money.model_validate(charge["fee"])
        paid = PaymentCaptured(
            order_id=order_id, iccid=request["iccid"], amount=amount, fee=fee,
            provider_reference=f"p-{marker}",
        )  # fmt: skip
        paid_at = await produce(kafka, topics.PAYMENTS_EVENTS, paid.model_dump_json().encode(), key)
        [top_up] = await messages_about(kafka, topics.PROVISIONING_COMMANDS, order_id)

        dead_command = await dead_letter_of(kafka, topics.ORDERS_COMMANDS, bad_command)
        dead_events = {
            reason: await dead_letter_of(kafka, topics.PAYMENTS_EVENTS, body)
            for reason, body in bad_events.items()
        }

    assert top_up["idempotency_key"] == f"{order_id}:topup"
    assert placed_at[0] == command_at[0]
    assert placed_at[1] > command_at[1]
    for reason, (partition, offset) in events_at.items():
        assert paid_at[0] == partition, reason
        assert paid_at[1] > offset, reason

    expected = [(topics.ORDERS_COMMANDS, "undecodable", bad_command, command_at, dead_command)]
    expected += [
        (topics.PAYMENTS_EVENTS, reason, body, events_at[reason], dead_events[reason])
        for reason, body in bad_events.items()
    ]
    for source, reason, body, (partition, offset), dead in expected:
        headers = headers_of(dead)
        assert headers["dlq.reason"] == reason, headers
        assert dead.value == body
        assert dead.key == key
        assert headers["dlq.source.topic"] == source
        assert headers["dlq.source.partition"] == str(partition)
        assert headers["dlq.source.offset"] == str(offset)
        assert headers["dlq.consumer"] == "orders"
        assert headers["dlq.error"]
        assert headers["dlq.failed_at"]
