"""The limit the saga is measured against: the same three processes relaying the same hops
through the same broker with plain aiokafka, and nothing else: no database, no validation,
no framework. Bytes in, bytes out, keyed the same, of the sizes the real messages have.

    python -m tests.bench.raw_relay orders|payments|provisioning --bootstrap-servers HOST:PORT

A message's value is one byte naming it, the order id (36 bytes), then padding up to the
size of the real message; a relay copies the order id into the next message and publishes
it with the real message's headers, after which it commits its offsets (at least once, as
the services do).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import uuid
from datetime import UTC, datetime
from functools import cache
from typing import Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared import topics
from shared.events import (
    ChargePayment,
    LineToppedUp,
    Message,
    Money,
    OrderCompleted,
    OrderPlaced,
    PaymentCaptured,
    PlaceOrder,
    TopUpLine,
)
from tests.factories import order_request


def raw(topic: str) -> str:
    """The raw relay's stand-in for one of the saga's topics."""
    return f"bench.raw.{topic}"


TOPICS: Final = tuple(raw(topic) for topic in topics.SAGA_TOPICS)
ORDERS_COMMANDS: Final = raw(topics.ORDERS_COMMANDS)  # what the driver publishes
ORDERS_EVENTS: Final = raw(topics.ORDERS_EVENTS)  # where it sees the saga end
PARTITIONS: Final = 3  # as the saga's topics

# The hops of a completed saga: what each service publishes for a message on each of its
# input topics (the topics are the saga's own, the relay uses their stand-ins).
SAGA_HOPS: Final[dict[str, dict[str, tuple[tuple[str, str], ...]]]] = {
    "orders": {
        topics.ORDERS_COMMANDS: (
            (topics.ORDERS_EVENTS, "OrderPlaced"),
            (topics.PAYMENTS_COMMANDS, "ChargePayment"),
        ),
        topics.PAYMENTS_EVENTS: ((topics.PROVISIONING_COMMANDS, "TopUpLine"),),
        topics.PROVISIONING_EVENTS: ((topics.ORDERS_EVENTS, "OrderCompleted"),),
    },
    "payments": {topics.PAYMENTS_COMMANDS: ((topics.PAYMENTS_EVENTS, "PaymentCaptured"),)},
    "provisioning": {topics.PROVISIONING_COMMANDS: ((topics.PROVISIONING_EVENTS, "LineToppedUp"),)},
}
HOPS: Final = {
    role: {raw(source): tuple((raw(to), name) for to, name in out) for source, out in hops.items()}
    for role, hops in SAGA_HOPS.items()
}

# The first byte of a value: which message it stands for.
CODES: Final = {
    "PlaceOrder": b"P",
    "OrderPlaced": b"p",
    "ChargePayment": b"h",
    "PaymentCaptured": b"k",
    "TopUpLine": b"t",
    "LineToppedUp": b"l",
    "OrderCompleted": b"c",
}
ORDER_ID = slice(1, 37)


@cache
def message_sizes() -> dict[str, int]:
    """The size in bytes of each message of a completed saga, as the services write it."""
    request = order_request()
    order = PlaceOrder.model_validate(request)
    ids = {"order_id": order.order_id, "iccid": order.iccid}
    money, no_fee = Money(amount_minor=1500, currency="EUR"), Money(amount_minor=0, currency="EUR")
    until = datetime(2030, 1, 1, tzinfo=UTC)
    messages: list[Message] = [
        OrderPlaced(
            **ids,
            request_id=order.request_id,
            package_id=order.package_id,
            catalog_version="2026-01-01",
            price=money,
            discount=no_fee,
            fee=no_fee,
            total=money,
            payment_method="card",
        ),
        ChargePayment(
            **ids,
            amount=money,
            fee=no_fee,
            payment_method="card",
            payment_token=order.payment_token,
            idempotency_key=f"{order.order_id}:charge",
        ),
        PaymentCaptured(**ids, amount=money, fee=no_fee, provider_reference=f"sim-{uuid.uuid4()}"),
        TopUpLine(
            **ids,
            package_id=order.package_id,
            data_mb=5120,
            validity_days=30,
            idempotency_key=f"{order.order_id}:topup",
        ),
        LineToppedUp(**ids, data_mb=5120, valid_until=until, data_remaining_mb=5120),
        OrderCompleted(**ids, request_id=order.request_id, data_mb=5120, valid_until=until),
    ]
    sizes = {m.type: len(m.model_dump_json()) for m in messages}
    return {"PlaceOrder": len(order.model_dump_json()), **sizes}


def encode(name: str, order_id: bytes) -> bytes:
    """The stand-in for message `name` about `order_id` (36 ASCII bytes)."""
    head = CODES[name] + order_id
    return head + b" " * max(0, message_sizes()[name] - len(head))


def headers(name: str, order_id: bytes) -> list[tuple[str, bytes]]:
    """The headers the services put on every message (shared/kafka.py: type, event id, order)."""
    return [
        ("type", name.encode()),
        ("event_id", str(uuid.uuid4()).encode()),
        ("order_id", order_id),
    ]


async def create_topics(bootstrap_servers: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        missing = set(TOPICS) - set(await admin.list_topics())
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(t, num_partitions=PARTITIONS, replication_factor=1) for t in missing]
                )
    finally:
        await admin.close()


async def relay(role: str, bootstrap_servers: str, stop: asyncio.Event) -> None:
    """Consume the role's input topics in batches, publish the next hop of every message,
    wait for the broker's acknowledgements, commit; until `stop` is set."""
    hops = HOPS[role]
    consumer = AIOKafkaConsumer(
        *hops,
        bootstrap_servers=bootstrap_servers,
        group_id=f"bench.raw.{role}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    # As the services' producer: idempotent, acknowledged by all replicas.
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=1000)
            sent = []
            for partition, records in batch.items():
                for record in records:
                    order_id = (record.value or b"")[ORDER_ID]
                    for topic, name in hops[partition.topic]:
                        sent.append(
                            await producer.send(
                                topic,
                                encode(name, order_id),
                                key=record.key,
                                headers=headers(name, order_id),
                            )
                        )
            if sent:
                await asyncio.gather(*sent)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


async def _main(role: str, bootstrap_servers: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await relay(role, bootstrap_servers, stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("role", choices=sorted(HOPS))
    parser.add_argument("--bootstrap-servers", required=True)
    args = parser.parse_args()
    asyncio.run(_main(args.role, args.bootstrap_servers))


if __name__ == "__main__":
    main()
