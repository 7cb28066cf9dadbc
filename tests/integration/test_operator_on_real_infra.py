"""The operator service on the real broker, with orders, payments and provisioning
running in-process on PostgreSQL: what an operator sees of topics, sagas, orders and
dead letters, and what replaying one leaves in the audit log."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.operator.app import build_app as build_operator
from services.operator.audit import AUDIT_TOPIC
from services.operator.settings import OperatorSettings
from services.operator.timeline import partition_for
from services.orders.app import build_app as build_orders
from services.payments.app import build_app as build_payments
from services.provisioning.app import build_app as build_provisioning
from shared import topics
from shared.access import Callers
from shared.events import Money, PaymentCaptured, order_id_for
from shared.logs import mask
from tests.credentials import READER
from tests.factories import order_request, random_iccid
from tests.infra import KafkaUnderTest, PostgresUnderTest
from tests.integration.harness import outside_world, send_raw, service_running

pytestmark = pytest.mark.integration

ALICE = {"Authorization": "Bearer alice-token"}
TOKENS = "alice=alice-token,bob=bob-token"
T = TypeVar("T")


@dataclass
class Stack:
    kafka: KafkaUnderTest
    operator: httpx.AsyncClient
    orders: httpx.AsyncClient


@pytest.fixture(scope="module")
async def stack(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    async with AsyncExitStack() as running:
        patch = running.enter_context(pytest.MonkeyPatch.context())
        patch.setenv("OPERATOR_TOKENS", TOKENS)  # orders reads it for /sagas
        orders = await running.enter_async_context(
            service_running(build_orders, "orders", kafka, postgres)
        )
        world = await running.enter_async_context(outside_world(tmp_path_factory.mktemp("outside")))
        for build, name in ((build_payments, "payments"), (build_provisioning, "provisioning")):
            await running.enter_async_context(service_running(build, name, kafka, postgres, world))
        to_orders = httpx.ASGITransport(app=orders)
        settings = OperatorSettings(
            **kafka.settings("operator"),
            orders_url="http://orders",
            sample_interval_s=0.5,
            rate_window_s=10,
        )
        operator = build_operator(
            settings, callers=Callers.parse("", TOKENS), orders_transport=to_orders
        )
        await running.enter_async_context(operator.router.lifespan_context(operator))
        client = await running.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=operator), base_url="http://op")
        )
        orders_client = await running.enter_async_context(
            httpx.AsyncClient(transport=to_orders, base_url="http://orders", headers=ALICE)
        )
        yield Stack(kafka, client, orders_client)


async def eventually(
    ask: Callable[[], Awaitable[T]], ok: Callable[[T], bool], within: float = 30.0
) -> T:
    """Ask until the answer is ok; the last answer in the failure otherwise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        answer = await ask()
        if ok(answer):
            return answer
        if loop.time() > deadline:
            raise AssertionError(f"not so after {within}s: {answer}")
        await asyncio.sleep(0.25)


async def get(stack: Stack, path: str, **params: Any) -> Any:
    response = await stack.operator.get(path, params=params, headers=ALICE)
    assert response.status_code == 200, response.text
    return response.json()


async def test_an_order_through_the_whole_saga_shows_its_transitions_and_every_message(
    stack: Stack,
) -> None:
    request = order_request(promotion_code="BONUS1GB")
    order_id = str(order_id_for(request["request_id"]))
    await send_raw(stack.kafka, topics.ORDERS_COMMANDS, request)

    def completed(found: Any) -> bool:
        timeline = found["orders"][0]["timeline"] if "orders" in found else []
        return any(m["type"] == "OrderCompleted" for m in timeline)

    async def search(q: str) -> Any:
        response = await stack.operator.get("/api/orders/search", params={"q": q}, headers=ALICE)
        return response.json()

    found = await eventually(lambda: search(order_id), completed)
    by_request = await search(request["request_id"])
    by_line = await search(request["iccid"])

    [order] = found["orders"]
    assert found["kind"] == "order_id"
    assert order["order_id"] == order_id
    assert order["state"] == "COMPLETED"
    assert order["iccid"] == mask(request["iccid"]) != request["iccid"]
    assert order["total"]["currency"] == "EUR"
    assert [t["state"] for t in order["transitions"]] == [
        "PLACED", "PAYMENT_PENDING", "PAID", "TOPUP_PENDING", "COMPLETED",
    ]  # fmt: skip
    types = [m["type"] for m in order["timeline"]]
    assert types[0] == "PlaceOrder"
    for kind in ("OrderPlaced", "ChargePayment", "PaymentCaptured", "TopUpLine", "LineToppedUp"):
        assert kind in types
    assert types.index("ChargePayment") < types.index("PaymentCaptured") < types.index("TopUpLine")
    assert types.index("TopUpLine") < types.index("LineToppedUp") < types.index("OrderCompleted")
    stamps = [m["timestamp"] for m in order["timeline"]]
    assert stamps == sorted(stamps)
    charge = next(m for m in order["timeline"] if m["type"] == "ChargePayment")
    assert charge["topic"] == topics.PAYMENTS_COMMANDS
    assert charge["summary"].startswith(f"ChargePayment {order['total']['amount_minor'] // 100}.")
    assert "by card" in charge["summary"]
    assert request["iccid"] not in json.dumps(found)
    assert by_request["kind"] == "request_id"
    assert by_request["orders"][0]["timeline"] == order["timeline"]
    assert by_line["kind"] == "iccid"
    assert [o["order_id"] for o in by_line["orders"]] == [order_id]


async def test_a_search_that_matches_nothing_is_404_and_an_empty_one_422(stack: Stack) -> None:
    for q in (str(uuid.uuid4()), random_iccid(), f"req-{uuid.uuid4()}"):
        response = await stack.operator.get("/api/orders/search", params={"q": q}, headers=ALICE)
        assert response.status_code == 404, q
        assert "matches" in response.json()["detail"]
    empty = await stack.operator.get("/api/orders/search", params={"q": ""}, headers=ALICE)
    assert empty.status_code == 422


async def test_a_saga_waiting_on_a_payment_is_counted_and_listed_as_stuck(stack: Stack) -> None:
    request = order_request(payment_token="tok_pending_forever")
    order_id = str(order_id_for(request["request_id"]))
    await send_raw(stack.kafka, topics.ORDERS_COMMANDS, request)

    def stuck_ids(body: Any) -> list[str]:
        return [s["order_id"] for s in body["stuck"]]

    sagas = await eventually(
        lambda: get(stack, "/api/sagas", stuck_after_s=1),
        lambda body: order_id in stuck_ids(body),
    )
    [stuck] = [s for s in sagas["stuck"] if s["order_id"] == order_id]
    assert stuck["state"] == "PAYMENT_PENDING"
    assert stuck["request_id"] == request["request_id"]
    assert stuck["iccid"] == mask(request["iccid"])
    assert stuck["waiting_s"] >= 1
    assert sagas["by_state"]["PAYMENT_PENDING"] >= 1
    assert sagas["total"] == sum(sagas["by_state"].values())
    assert sagas["stuck_after_s"] == 1
    patient = await get(stack, "/api/sagas", stuck_after_s=3600)
    assert order_id not in stuck_ids(patient)
    # The operator asks orders with the caller's token; orders checks it too.
    assert (await stack.orders.get("/sagas", headers={"Authorization": ""})).status_code == 401
    assert (await stack.orders.get("/sagas", headers=READER)).status_code == 403
    assert (await stack.orders.get("/sagas", headers=ALICE)).status_code == 200


async def test_the_topic_overview_shows_a_groups_lag_and_then_its_catching_up(
    stack: Stack,
) -> None:
    topic, group = topics.ORDERS_EVENTS, f"test-lag-{uuid.uuid4()}"
    key = random_iccid()
    tp = TopicPartition(topic, partition_for(key, 3))
    consumer = AIOKafkaConsumer(
        **stack.kafka.options(), group_id=group,
        enable_auto_commit=False,
    )  # fmt: skip
    producer = AIOKafkaProducer(**stack.kafka.options(), acks="all")
    await consumer.start()
    await producer.start()
    try:
        consumer.assign([tp])
        start = (await consumer.end_offsets([tp]))[tp]
        await consumer.commit({tp: start})
        for n in range(5):
            await producer.send_and_wait(topic, json.dumps({"lag": n}).encode(), key=key.encode())

        def lag_of(body: Any) -> int | None:
            [row] = [t for t in body["topics"] if t["name"] == topic]
            found = [g for g in row["consumer_groups"] if g["group"] == group]
            return found[0]["lag"] if found else None

        behind = await eventually(lambda: get(stack, "/api/topics"), lambda b: lag_of(b) == 5)
        await consumer.commit({tp: start + 5})
        caught_up = await eventually(lambda: get(stack, "/api/topics"), lambda b: lag_of(b) == 0)
    finally:
        await producer.stop()
        await consumer.stop()

    [row] = [t for t in behind["topics"] if t["name"] == topic]
    assert row["rate_per_s"] > 0
    assert row["end_offset"] == sum(p["end_offset"] for p in row["partitions"])
    [mine] = [g for g in row["consumer_groups"] if g["group"] == group]
    assert mine["partitions"] == [{"partition": tp.partition, "committed": start, "lag": 5}]
    names = [t["name"] for t in caught_up["topics"]]
    assert names == [*topics.ALL_TOPICS, AUDIT_TOPIC]
    assert [t["dead_letter"] for t in caught_up["topics"]] == [n.endswith(".dlt") for n in names]
    assert caught_up["window_s"] == 10


async def test_a_dead_letter_is_listed_then_replayed_and_the_audit_names_who_replayed_it(
    stack: Stack,
) -> None:
    iccid, order_id = random_iccid(), uuid.uuid4()
    eur = Money(amount_minor=1500, currency="EUR")
    orphan = PaymentCaptured(
        order_id=order_id, iccid=iccid, amount=eur, fee=eur, provider_reference="p-orphan"
    )
    # Captured for an order orders never heard of: dead-lettered (business_rule).
    await send_raw(stack.kafka, topics.PAYMENTS_EVENTS, orphan.model_dump(mode="json"))

    def about_it(body: Any) -> list[dict[str, Any]]:
        return [d for d in body["dead_letters"] if d["order_id"] == str(order_id)]

    listed = await eventually(lambda: get(stack, "/api/dead-letters"), lambda b: bool(about_it(b)))
    [letter] = about_it(listed)
    assert letter["topic"] == topics.dead_letter_topic(topics.PAYMENTS_EVENTS)
    assert letter["id"] == f"{letter['topic']}:{letter['partition']}:{letter['offset']}"
    assert letter["source_topic"] == topics.PAYMENTS_EVENTS
    assert letter["reason"] == "business_rule"
    assert letter["consumer"] == "orders"
    assert letter["type"] == "PaymentCaptured"
    assert letter["replayed_by"] is None
    assert letter["payload_preview"].startswith('{"type": "PaymentCaptured"')
    assert iccid not in json.dumps(listed)

    replay = await stack.operator.post(
        "/api/dead-letters/replay", json={"ids": [letter["id"]]}, headers=ALICE
    )
    assert replay.status_code == 200, replay.text
    assert replay.json() == {"replayed": [letter["id"]], "by": "alice"}

    # Its order still does not exist: refused again, a new dead letter with the trail.
    after = await eventually(
        lambda: get(stack, "/api/dead-letters"), lambda b: len(about_it(b)) == 2
    )
    again, first = about_it(after)
    assert first["id"] == letter["id"]
    assert first["replayed_by"] == "alice"
    assert first["replayed_at"] is not None
    assert again["replayed_by"] is None
    [entry, *_] = (await get(stack, "/api/audit", limit=10))["entries"]
    assert entry["operator"] == "alice"
    assert entry["action"] == "dead_letters.replay"
    assert entry["target"] == letter["id"]
    assert entry["outcome"] == "ok"
    assert entry["detail"]["ids"] == [letter["id"]]


async def test_replaying_an_unknown_dead_letter_is_404_and_audited_a_bad_body_422(
    stack: Stack,
) -> None:
    bob = {"Authorization": "Bearer bob-token"}
    unknown = f"{topics.dead_letter_topic(topics.PAYMENTS_EVENTS)}:0:999999999"
    missing = await stack.operator.post(
        "/api/dead-letters/replay", json={"ids": [unknown]}, headers=bob
    )
    assert missing.status_code == 404
    assert unknown in missing.json()["detail"]
    [entry, *_] = (await get(stack, "/api/audit", limit=1))["entries"]
    assert (entry["operator"], entry["outcome"], entry["target"]) == ("bob", "not_found", unknown)
    # A partition the topic does not have: as unknown, and audited the same.
    no_partition = f"{topics.dead_letter_topic(topics.PAYMENTS_EVENTS)}:9:0"
    nowhere = await stack.operator.post(
        "/api/dead-letters/replay", json={"ids": [no_partition]}, headers=bob
    )
    assert nowhere.status_code == 404
    [entry, *_] = (await get(stack, "/api/audit", limit=1))["entries"]
    assert (entry["outcome"], entry["target"]) == ("not_found", no_partition)
    bad_bodies: list[dict[str, Any]] = [
        {}, {"ids": []}, {"ids": ["nope"]}, {"all": True, "ids": [unknown]},
    ]  # fmt: skip
    for bad in bad_bodies:
        response = await stack.operator.post("/api/dead-letters/replay", json=bad, headers=bob)
        assert response.status_code == 422, bad


async def test_the_audit_log_is_a_kafka_topic_of_json_records(stack: Stack) -> None:
    await stack.operator.post(
        "/api/dead-letters/replay", json={"all": True, "reason": "no_such_reason"}, headers=ALICE
    )
    consumer = AIOKafkaConsumer(**stack.kafka.options())
    await consumer.start()
    try:
        tp = TopicPartition(AUDIT_TOPIC, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, end - 1)
        [record] = (await consumer.getmany(tp, timeout_ms=10_000))[tp][-1:]
    finally:
        await consumer.stop()
    body = json.loads(record.value)
    assert set(body) == {"at", "operator", "action", "target", "outcome", "detail"}
    assert (body["operator"], body["target"], body["outcome"]) == (
        "alice", "all reason=no_such_reason", "ok",
    )  # fmt: skip
    assert body["detail"]["ids"] == []
