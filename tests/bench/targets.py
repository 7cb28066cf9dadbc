"""What the driver publishes to start a saga and how it recognises the saga's end, for the
two systems it drives: the services (PlaceOrder in, an order's terminal event out) and the
raw relay (the same hops as bytes)."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from shared import topics
from shared.events import order_id_for
from tests.bench import raw_relay
from tests.factories import order_request, random_iccid

# An order's last event on orders.events.v1, and whether it is the happy ending.
TERMINAL_EVENTS: Final = {
    "OrderCompleted": True,
    "OrderPaymentFailed": False,
    "OrderExpired": False,
    "OrderRefunded": False,
    "OrderRejected": False,
}


@dataclass(frozen=True)
class Order:
    order_id: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class Target(Protocol):
    name: str
    request_topic: str
    result_topic: str

    def new_order(self) -> Order: ...

    def outcome(self, value: bytes) -> tuple[str, bool] | None:
        """(order id, completed?) when `value` ends an order, else None."""


@dataclass
class Saga:
    """The services: card orders that succeed (a valid package, a token the simulated
    provider captures, a fresh valid line each), every request kept for the invariants."""

    name: str = "saga"
    request_topic: str = topics.ORDERS_COMMANDS
    result_topic: str = topics.ORDERS_EVENTS
    requests: list[dict[str, Any]] = field(default_factory=list)

    def new_order(self) -> Order:
        body = order_request()
        self.requests.append(body)
        order_id = str(order_id_for(body["request_id"]))
        return Order(order_id, body["iccid"].encode(), json.dumps(body).encode())

    def outcome(self, value: bytes) -> tuple[str, bool] | None:
        event = json.loads(value)
        ok = TERMINAL_EVENTS.get(event.get("type"))
        return None if ok is None else (event["order_id"], ok)


@dataclass
class RawRelay:
    """The raw relay (tests/bench/raw_relay.py): a PlaceOrder-sized stand-in in, an
    OrderCompleted-sized one out. Lines come from a pool: random, valid, spread evenly."""

    name: str = "raw relay"
    request_topic: str = raw_relay.ORDERS_COMMANDS
    result_topic: str = raw_relay.ORDERS_EVENTS
    lines: list[bytes] = field(
        default_factory=lambda: [random_iccid().encode() for _ in range(4096)]
    )

    def new_order(self) -> Order:
        order_id = str(uuid.uuid4()).encode()
        return Order(
            order_id.decode(),
            random.choice(self.lines),
            raw_relay.encode("PlaceOrder", order_id),  # no headers, as publishers send it
        )

    def outcome(self, value: bytes) -> tuple[str, bool] | None:
        if value[:1] != raw_relay.CODES["OrderCompleted"]:
            return None
        return value[raw_relay.ORDER_ID].decode(), True
